package h1

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// pipelineSeeds are byte streams of several requests back to back: the
// request smuggling classics, where two parsers split one stream in
// different places, and streams that go from the lean loop to the
// fallback.
var pipelineSeeds = []string{
	// Plain pipelines: lean, lean then fallback, fallback.
	get("/a") + get("/b?x=1") + "HEAD /c HTTP/1.1\r\nHost: edge\r\n\r\n",
	get("/a") + "PUT /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 4\r\n\r\ndata" + get("/c"),
	get("/a") + "POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nab\r\n0\r\n\r\n" + get("/c"),
	// CL.TE and TE.CL: both framings on one request.
	"POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 13\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nSMUGGLED" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n" + get("/next"),
	get("/a", "Content-Length: 37\r\n", "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n" + get("/smuggled") + get("/next"),
	// CL.CL: two lengths, equal or not.
	"POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 5, 5\r\n\r\nhello" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: +5\r\n\r\nhello" + get("/next"),
	// A body on a GET, which the lean loop must not read as the next request.
	get("/a", "Content-Length: 20\r\n") + get("/smuggled") + get("/next"),
	get("/a", "content-length: 0\r\n") + get("/next"),
	get("/a", "Transfer-Encoding: chunked\r\n") + "0\r\n\r\n" + get("/next"),
	// Transfer-Encoding with chunked not last, twice, in odd forms.
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: identity\r\n\r\n0\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: CHUNKED\r\n\r\n0\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding:\tchunked\r\n\r\n0\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n" + get("/next"),
	// Whitespace before the colon.
	get("/a", "Transfer-Encoding : chunked\r\n") + "0\r\n\r\n" + get("/next"),
	get("/a", "Content-Length : 20\r\n") + get("/smuggled") + get("/next"),
	// Chunk extensions, on the last chunk too, and trailers.
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n2;a=b\r\nab\r\n0;ext=\"x\"\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n0;\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-Trailer: 1\r\n\r\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n3\nabc\n0\n\n" + get("/next"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n" + get("/next"),
	// Requests after Connection: close are never served.
	get("/a", "Connection: close\r\n") + get("/after"),
	get("/a", "Connection: keep-alive, close\r\n") + get("/after"),
	"PUT /p HTTP/1.1\r\nHost: edge\r\nConnection: close\r\nContent-Length: 1\r\n\r\nx" + get("/after"),
	// Bare LF, a block ending in LF CRLF, a bare CR.
	"GET /a HTTP/1.1\nHost: edge\n\nGET /b HTTP/1.1\nHost: edge\n\n",
	"GET /a HTTP/1.1\r\nHost: edge\n\r\nGET /b HTTP/1.1\r\nHost: edge\r\n\r\n",
	"GET /a HTTP/1.1\rHost: edge\r\n\r\n" + get("/b"),
	"GET /a HTTP/1.1\r\nHost: edge\r\r\n\r\n" + get("/b"),
	// Folded lines (obs-fold), one hiding a length.
	get("/a", "X: y\r\n Content-Length: 20\r\n") + get("/smuggled") + get("/next"),
	get("/a", "Content-Length:\r\n 20\r\n") + get("/smuggled") + get("/next"),
	"GET /a HTTP/1.1\r\n Host: edge\r\n\r\n" + get("/b"),
	// Duplicate and odd headers.
	"GET /a HTTP/1.1\r\nHost: edge\r\nHost: other\r\n\r\n" + get("/b"),
	"GET /a HTTP/1.1\r\nHost:\r\n\r\n" + get("/b"),
	get("/a", "X: a\x00b\r\n") + get("/b"),
	get("/a", "Expect: 100-continue\r\n") + get("/b"),
	get("/a", "Upgrade: websocket\r\nConnection: Upgrade\r\n") + get("/b"),
	// Empty lines between requests, after a lean request and after a POST.
	get("/a") + "\r\n" + get("/b"),
	"POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\n\r\n\r\n" + get("/b"),
	// HTTP/1.0, an absolute target, odd request lines.
	"GET /a HTTP/1.0\r\nHost: edge\r\nConnection: keep-alive\r\nContent-Length: 3\r\n\r\nabc" + get("/b"),
	"GET http://edge/a HTTP/1.1\r\nHost: edge\r\n\r\n" + get("/b"),
	"GET  /a HTTP/1.1\r\nHost: edge\r\n\r\n" + get("/b"),
	"GET /a HTTP/1.1 \r\nHost: edge\r\n\r\n" + get("/b"),
	// A header beyond the loop's buffer, then a lean request.
	get("/large", "Big: "+strings.Repeat("x", 5000)+"\r\n") + get("/b"),
	get("/a") + get("/large", "Big: "+strings.Repeat("x", 4060)+"\r\n") + get("/b"),
	// A request cut short.
	get("/a") + "GET /b HTTP/1.1\r\nHost: ed",
}

// maxStream bounds a fuzzed stream: past the loop's 4 KiB buffer, well
// under a socket's buffers.
const maxStream = 16 << 10

// hangAfter is how long an exchange may take before the fuzz test calls it
// a hang: both servers read the stream to its end, and a hang is a defect.
const hangAfter = 30 * time.Second

// FuzzPipelined holds the node to net/http over pipelined byte streams:
// sent on one connection to the node and to a net/http server with the
// same handler, a stream must make the node's handlers see the requests
// net/http's sees, or fewer (the node may refuse what net/http takes), but
// never one net/http does not, nor one split from the stream elsewhere: a
// request smuggled past one of them.
//
// piece, when not 0, sends the stream in writes of that many bytes, so
// that requests arrive cut at other places.
func FuzzPipelined(f *testing.F) {
	for i, s := range pipelineSeeds {
		f.Add([]byte(s), uint8(0))
		if i%4 == 0 {
			f.Add([]byte(s), uint8(7))
		}
	}
	p := newPair(f)
	f.Fuzz(func(t *testing.T, stream []byte, piece uint8) {
		if len(stream) > maxStream {
			return
		}
		node, plain := p.send(t, stream, int(piece))
		if err := agree(node, plain); err != nil {
			t.Fatalf("%q: %v", stream, err)
		}
	})
}

// pair is a node and a net/http server that record what their handlers see.
type pair struct {
	rec         *dispatched
	node, plain string // addresses
}

func newPair(tb testing.TB) *pair {
	rec := &dispatched{seen: map[string][]seen{}}
	node := serveWith(tb, rec, &http.Server{Handler: rec}, WithMaxConns(1<<12), WithMaxConnsPerClient(1<<12))
	plain := httptest.NewUnstartedServer(rec)
	// As the node's fallback: HTTP/1.1 only.
	plain.Config.Protocols = new(http.Protocols)
	plain.Config.Protocols.SetHTTP1(true)
	plain.Start()
	tb.Cleanup(plain.Close)
	return &pair{rec: rec, node: node.addr, plain: plain.Listener.Addr().String()}
}

// send sends stream to both servers and returns the requests each
// dispatched.
func (p *pair) send(t *testing.T, stream []byte, piece int) (node, plain []seen) {
	t.Helper()
	addr, answer := exchange(t, p.node, stream, piece)
	if strings.HasPrefix(string(answer), "HTTP/1.1 503") {
		t.Fatalf("the node refused the connection: %q", answer)
	}
	node = p.rec.take(addr)
	addr, _ = exchange(t, p.plain, stream, piece)
	return node, p.rec.take(addr)
}

// agree reports whether the requests the node dispatched are those
// net/http dispatched, or the first of them.
func agree(node, plain []seen) error {
	for i, r := range node {
		if i >= len(plain) {
			return fmt.Errorf("the node dispatched request %d, %+v; net/http dispatched %d", i+1, r, len(plain))
		}
		if r != plain[i] {
			return fmt.Errorf("request %d: the node dispatched %+v; net/http %+v", i+1, r, plain[i])
		}
	}
	return nil
}

func TestAgree(t *testing.T) {
	t.Parallel()
	a, b, c := seen{URI: "/a"}, seen{URI: "/b"}, seen{URI: "/b", Body: "x"}
	for _, tc := range []struct {
		node, plain []seen
		ok          bool
	}{
		{nil, nil, true},
		{[]seen{a, b}, []seen{a, b}, true},
		{[]seen{a}, []seen{a, b}, true}, // stricter
		{nil, []seen{a}, true},
		{[]seen{a, b}, []seen{a}, false}, // one more
		{[]seen{a}, nil, false},
		{[]seen{a, c}, []seen{a, b}, false}, // split elsewhere
	} {
		if err := agree(tc.node, tc.plain); (err == nil) != tc.ok {
			t.Errorf("agree(%+v, %+v) = %v", tc.node, tc.plain, err)
		}
	}
}

// seen is what a handler saw of a request.
type seen struct {
	Method, URI, Proto, Host, URL string
	Close                         bool
	Length                        int64
	TE, Header, Body, Trailer     string
	BodyErr                       bool
}

// dispatched is the handler of both servers: it reads each request's body
// and records what it saw, by connection.
type dispatched struct {
	mu   sync.Mutex
	seen map[string][]seen // by the client's address
}

func (d *dispatched) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	var h, tr strings.Builder
	_ = r.Header.Write(&h) // sorted by name
	_ = r.Trailer.Write(&tr)
	s := seen{
		Method: r.Method, URI: r.RequestURI, Proto: r.Proto, Host: r.Host, URL: r.URL.String(),
		Close: r.Close, Length: r.ContentLength, TE: fmt.Sprint(r.TransferEncoding),
		Header: h.String(), Body: string(body), Trailer: tr.String(), BodyErr: err != nil,
	}
	d.mu.Lock()
	d.seen[r.RemoteAddr] = append(d.seen[r.RemoteAddr], s)
	d.mu.Unlock()
	_, _ = io.WriteString(w, "seen")
}

// take returns and forgets the requests seen from addr.
func (d *dispatched) take(addr string) []seen {
	d.mu.Lock()
	defer d.mu.Unlock()
	s := d.seen[addr]
	delete(d.seen, addr)
	return s
}

// exchange sends stream to addr on a new connection, in writes of piece
// bytes (0: one write), closes its sending side, and reads the answers
// until the server closes. The server has dispatched every request it
// will by then. It returns the connection's local address, the server's
// RemoteAddr, and the answers.
func exchange(t *testing.T, addr string, stream []byte, piece int) (string, []byte) {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	c := nc.(*net.TCPConn)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(hangAfter))
	sent := make(chan struct{})
	go func() {
		defer close(sent)
		// Write errors are the server's closing: the answers say the rest.
		for rest := stream; len(rest) > 0; {
			n := len(rest)
			if piece > 0 {
				n = min(n, piece)
			}
			if _, err := c.Write(rest[:n]); err != nil {
				return
			}
			rest = rest[n:]
		}
		_ = c.CloseWrite()
	}()
	answer, err := io.ReadAll(c)
	<-sent
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("%s did not close the connection within %v of %q", addr, hangAfter, stream)
	}
	// Otherwise an end of stream, or a reset after a close with bytes
	// unread: the server is done either way.
	return c.LocalAddr().String(), answer
}

// The node splits pipelined streams where net/http does: a body is never
// read as the next request, nothing after Connection: close is served.
func TestPipelinedFraming(t *testing.T) {
	t.Parallel()
	p := newPair(t)
	hidden := get("/smuggled")
	for _, tc := range []struct {
		name, stream string
		want         []string // method, target and body of each request the node serves
	}{
		{"lean", get("/a") + get("/b?x=1") + "HEAD /c HTTP/1.1\r\nHost: edge\r\n\r\n",
			[]string{"GET /a ", "GET /b?x=1 ", "HEAD /c "}},
		{"lean then fallback", get("/a") + "PUT /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 4\r\n\r\ndata" + get("/c"),
			[]string{"GET /a ", "PUT /p data", "GET /c "}},
		{"a GET with a body", get("/a", fmt.Sprintf("Content-Length: %d\r\n", len(hidden))) + hidden + get("/next"),
			[]string{"GET /a " + hidden, "GET /next "}},
		{"a GET with a chunked body", get("/a", "Transfer-Encoding: chunked\r\n") + fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(hidden), hidden) + get("/next"),
			[]string{"GET /a " + hidden, "GET /next "}},
		{"CL.TE", "POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + get("/next"),
			[]string{"POST /p ", "GET /next "}},
		{"CL.CL", "POST /p HTTP/1.1\r\nHost: edge\r\nContent-Length: 0\r\nContent-Length: 5\r\n\r\nhello" + get("/next"), nil},
		{"chunked not last", get("/a", "Transfer-Encoding: chunked, identity\r\n") + "0\r\n\r\n" + get("/next"), nil},
		{"space before the colon", get("/a", "Content-Length : 3\r\n") + "abc" + get("/next"), nil},
		// A folded line continues the one before: the length is part of X.
		{"folded length", get("/a", "X: y\r\n Content-Length: 3\r\n") + "abc" + get("/next"),
			[]string{"GET /a ", "abcGET /next "}},
		{"last chunk with an extension", "POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0;e=1\r\n\r\n" + get("/next"),
			[]string{"POST /p x", "GET /next "}},
		// A chunked body whose trailer is broken ends the connection: what
		// follows is not a request.
		{"a broken trailer", "POST /p HTTP/1.1\r\nHost: edge\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nx\r\n0\r\nbroken\r\n\r\n" + hidden,
			[]string{"POST /p x"}},
		{"after Connection: close", get("/a", "Connection: close\r\n") + get("/after"), []string{"GET /a "}},
		{"bare LF", "GET /a HTTP/1.1\nHost: edge\n\nGET /b HTTP/1.1\nHost: edge\n\n", []string{"GET /a ", "GET /b "}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			node, plain := p.send(t, []byte(tc.stream), 0)
			if err := agree(node, plain); err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range node {
				got = append(got, r.Method+" "+r.URI+" "+r.Body)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("the node served %q, want %q", got, tc.want)
			}
		})
	}
}
