// Package fleet is what the nodes of the fleet know of each other:
// membership, announced through the global tier that every node already
// shares (no other infrastructure), and the ownership of blobs within a
// region by rendezvous hashing over its live nodes, so that a region stores
// and fetches each blob once. docs/fleet.md is the design.
package fleet
