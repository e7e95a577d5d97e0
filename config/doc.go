// Package config reads the node's YAML configuration: what an operator
// writes, with secrets expanded from the environment (${NAME}), checked
// strictly, and turned into the routes and settings the node is built from.
// With no file at all the node runs on Default().
package config
