// Package h1 serves the API: its bodiless GET and HEAD requests (every
// pull) on a lean HTTP/1.1 connection loop, and any other connection on a
// net/http server, the fallback, under one set of limits.
//
// net/http spends more per request than a warm pull costs: a background
// read and two deadline changes per request, a cloned and sorted header
// map per response, a parser that allocates per header. The loop here
// parses a strict subset of requests itself (FuzzParseLean holds it to
// net/http's parser), renders responses into the connection's buffer,
// refreshes the idle deadline lazily, and keeps sendfile. A request it
// does not take (a body, Expect, Upgrade, HTTP/1.0, an absolute target,
// headers beyond its buffer, anything malformed) hands the connection,
// unread bytes included, to the fallback server for good, after flushing
// what the loop already answered. Without a lean handler, or with TLS,
// the fallback serves every connection.
//
// What a client can hold is bounded on both paths: the connections open
// at once, in all and from one client address (an idle one makes room for
// a new one, a connection whose request header has not ended counting as
// idle, as in net/http; past that, a new one gets a 503), one request at a
// time per connection (the fallback speaks HTTP/1.1 only, with TLS too),
// a request header's time, a request body's idle time and average
// rate (net/http only: the loop takes no bodies), and the time a client
// may take nothing of a response, a write deadline renewed as it takes,
// sendfile included. New refuses the fallback settings the loop could not
// honour alike (ReadTimeout, WriteTimeout, ConnState, ConnContext,
// BaseContext, ErrorLog); the loop honours ReadHeaderTimeout and
// IdleTimeout, and MaxHeaderBytes always holds, as the loop takes no header
// over 4 KiB. Drain and Shutdown stop the server gently.
//
// One difference from net/http is deliberate: net/http reads every
// connection in the background while a handler runs, to end the request's
// context as soon as the client leaves. That costs a quick request more
// than answering it, so here a request's connection is watched only once
// it has run for a second; before that, the client's leaving shows at the
// handler's next failed write.
package h1
