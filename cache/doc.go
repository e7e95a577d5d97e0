// Package cache is the tier engine of the edge node. It answers manifest,
// tag and blob requests from the tiers in order — the local tier (memory and
// disk, package localtier), the global tier when one is configured, then the
// route's origin — and fills the tiers above from the one that answered.
//
// Pushes to hosted repositories are package hosted's; it asks the engine
// to confirm what a repository holds and to remember what was pushed.
//
// A blob miss is streamed to the client while it is written to disk: one
// fill per digest however many clients ask, late joiners reading the file as
// it grows, the fill detached from any one client. Every byte is checked
// against its digest before it is committed, and the last bytes of a
// streamed response are held back until the check passes, so a client never
// receives a complete wrong blob.
//
// A route that forwards its clients' credentials to its origin admits each
// request only once the origin has answered a HEAD of what it asks for
// under that client's credentials (forward.go), whatever tier holds it, and
// keeps what it fetches out of the global tier.
package cache
