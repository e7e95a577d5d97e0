// Package policy holds the node's pure decisions: which route a repository
// name belongs to, what a route allows, who may do what (grants), and how
// long a tag stays fresh. Nothing here does I/O; callers hand in names,
// users, times and records and act on the answers.
package policy
