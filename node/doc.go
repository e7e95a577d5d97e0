// Package node builds an edge node from its configuration and runs it:
// the local tier, the origins, the global tier, the tier engine, who may do
// what, the API and admin listeners, and the work that runs beside them
// (the write-behind, the cleaning of abandoned uploads).
//
// New builds a node and opens its listeners; Run serves until its context
// ends or a part fails, then stops the node gently (readiness first, then
// the API once its requests are done, the fills, the admin listener last).
// cmd/edge and the tests that need a whole node use it alike.
package node
