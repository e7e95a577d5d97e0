// Package h1 serves the API's bodiless GET and HEAD requests (every pull)
// on a lean HTTP/1.1 connection loop, and hands any other connection to a
// net/http server.
//
// net/http spends more per request than a warm pull costs: a background
// read and two deadline changes per request, a cloned and sorted header
// map per response. The loop here parses with http.ReadRequest, answers
// with a small response writer, refreshes the idle deadline lazily, and
// keeps sendfile. A request it does not take (a body, Expect, Upgrade,
// HTTP/1.0, an absolute target, headers beyond its buffer) hands the
// connection, unread bytes included, to the fallback server for good,
// after flushing what the loop already answered.
package h1
