package h1

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of the settings a zero value leaves to the server.
const (
	// DefaultIdleTimeout bounds the wait for a connection's next request.
	DefaultIdleTimeout = 120 * time.Second
	// DefaultHeaderTimeout bounds the arrival of a request's header once
	// its first byte has come.
	DefaultHeaderTimeout = 30 * time.Second
	// DefaultBodyTimeout is how long a request body may send nothing, and
	// the grace before its minimum rate applies.
	DefaultBodyTimeout = 60 * time.Second
	// DefaultMinBodyRate is the rate, in bytes per second, a request body
	// must average once DefaultBodyTimeout has passed.
	DefaultMinBodyRate = 1 << 10
	// DefaultSendTimeout is how long a client may take nothing of a
	// response before it is cut off.
	DefaultSendTimeout = 60 * time.Second
)

// Option changes a Server built by New.
type Option func(*Server)

// WithLogger sets where handler panics and the fallback's errors are
// logged (default: slog.Default()).
func WithLogger(l *slog.Logger) Option { return func(s *Server) { s.log = l } }

// WithRegisterer registers the server's metrics into r (default: none).
func WithRegisterer(r prometheus.Registerer) Option { return func(s *Server) { s.reg = r } }

// WithMaxConns caps the connections open at once; 0 keeps the default,
// DefaultMaxConns(). A connection over the cap takes the place of an idle
// one if there is one, and is refused otherwise.
func WithMaxConns(n int) Option { return func(s *Server) { s.maxConns = n } }

// WithMaxConnsPerClient caps the connections open at once from one client:
// one IP address, or one IPv6 /64. 0 keeps the default, an eighth of the
// connection cap and at least 16; the connection cap or more puts no limit
// of its own. A client's connection over its cap takes the place of one of
// its own idle ones if there is one, and is refused otherwise.
func WithMaxConnsPerClient(n int) Option { return func(s *Server) { s.maxPerClient = n } }

// WithBodyTimeout bounds the reading of request bodies: a body that sends
// nothing for idle is cut off, and so is one that, once idle has passed,
// averages less than minRate bytes per second. Zeros keep the defaults.
func WithBodyTimeout(idle time.Duration, minRate int64) Option {
	return func(s *Server) { s.bodyTimeout, s.minBodyRate = idle, minRate }
}

// WithSendTimeout cuts off a client that takes nothing of a response for
// d; 0 keeps the default. A slow client that keeps taking is not cut off.
func WithSendTimeout(d time.Duration) Option { return func(s *Server) { s.sendTimeout = d } }

// withClock sets the clock that deadlines are computed from, for tests.
func withClock(now func() time.Time) Option { return func(s *Server) { s.now = now } }

// New returns a server that answers bodiless GET and HEAD requests with
// lean on its own loop and hands every other connection to fallback; with
// a nil lean, or a fallback with a TLSConfig, fallback serves every
// connection. The limits and timeouts of the options hold on both paths.
//
// New takes fallback over: it wraps its Handler with the body and send
// timeouts, sets its ConnState, ConnContext and ErrorLog, its Protocols
// when nil, and its IdleTimeout and ReadHeaderTimeout when zero (the lean
// loop honours those two). It refuses the fallback settings the lean loop
// could not honour alike.
//
// The fallback serves HTTP/1.1 only, with TLS too: over HTTP/2 one
// connection would carry many requests at once, each of which may hold a
// blob file open, past what the connection limit is sized for. Clients
// that offer HTTP/2 (containerd, Docker) agree on HTTP/1.1 and open a few
// connections instead, as registry clients commonly do.
func New(lean http.Handler, fallback *http.Server, opts ...Option) (*Server, error) {
	s := &Server{
		lean:        lean,
		fallback:    fallback,
		log:         slog.Default(),
		now:         time.Now,
		bodyTimeout: DefaultBodyTimeout,
		minBodyRate: DefaultMinBodyRate,
		sendTimeout: DefaultSendTimeout,
	}
	for _, o := range opts {
		o(s)
	}
	if err := s.check(); err != nil {
		return nil, err
	}
	// net/http's Serve sets a TLSConfig of its own: read it now.
	s.tls = fallback.TLSConfig != nil
	if s.maxConns == 0 {
		s.maxConns = DefaultMaxConns()
	}
	if s.maxPerClient == 0 {
		s.maxPerClient = maxConnsPerClientFor(s.maxConns)
	}
	if s.bodyTimeout == 0 {
		s.bodyTimeout = DefaultBodyTimeout
	}
	if s.minBodyRate == 0 {
		s.minBodyRate = DefaultMinBodyRate
	}
	if s.sendTimeout == 0 {
		s.sendTimeout = DefaultSendTimeout
	}
	if fallback.IdleTimeout == 0 {
		fallback.IdleTimeout = DefaultIdleTimeout
	}
	if fallback.ReadHeaderTimeout == 0 {
		fallback.ReadHeaderTimeout = DefaultHeaderTimeout
	}
	if fallback.Protocols == nil {
		fallback.Protocols = new(http.Protocols)
		fallback.Protocols.SetHTTP1(true)
	}
	fallback.Handler = s.guard(fallback.Handler)
	fallback.ConnState = s.connState
	fallback.ConnContext = s.connContext
	fallback.ErrorLog = slog.NewLogLogger(s.log.Handler(), slog.LevelWarn)
	s.metrics = newMetrics(s)
	if s.reg != nil {
		if err := s.metrics.register(s.reg); err != nil {
			return nil, fmt.Errorf("h1: %w", err)
		}
	}
	return s, nil
}

// check rejects what cannot work: settings of the fallback that the lean
// loop would ignore, where they would hold for some connections and not
// for others, and limits out of range.
func (s *Server) check() error {
	fb := s.fallback
	if fb == nil || fb.Handler == nil {
		return errors.New("h1: a fallback server with a handler is required")
	}
	var errs []error
	for _, set := range []struct {
		name, instead string
		on            bool
	}{
		{"ReadTimeout", "ReadHeaderTimeout and WithBodyTimeout", fb.ReadTimeout != 0},
		{"WriteTimeout", "WithSendTimeout", fb.WriteTimeout != 0},
		{"ConnState", "the server's metrics", fb.ConnState != nil},
		{"ConnContext", "the handler", fb.ConnContext != nil},
		{"BaseContext", "the handler", fb.BaseContext != nil},
		{"ErrorLog", "WithLogger", fb.ErrorLog != nil},
	} {
		if set.on {
			errs = append(errs, fmt.Errorf("the fallback's %s is not honoured on every connection: use %s", set.name, set.instead))
		}
	}
	if fb.IdleTimeout < 0 || fb.ReadHeaderTimeout < 0 {
		errs = append(errs, errors.New("the fallback's IdleTimeout and ReadHeaderTimeout must not be negative"))
	}
	if fb.TLSConfig != nil && s.lean != nil {
		errs = append(errs, errors.New("the lean loop does not speak TLS: pass a nil lean handler with a TLSConfig"))
	}
	if p := fb.Protocols; p != nil && (p.HTTP2() || p.UnencryptedHTTP2() || !p.HTTP1()) {
		errs = append(errs, errors.New("the fallback serves HTTP/1.1 only: over HTTP/2 one connection carries many requests, past the connection limit"))
	}
	if s.maxConns < 0 || s.maxPerClient < 0 || s.bodyTimeout < 0 || s.minBodyRate < 0 || s.sendTimeout < 0 {
		errs = append(errs, errors.New("connection limit, timeouts and rates must not be negative"))
	}
	if s.log == nil || s.now == nil {
		errs = append(errs, errors.New("a nil logger or clock"))
	}
	if len(errs) > 0 {
		return fmt.Errorf("h1: %w", errors.Join(errs...))
	}
	return nil
}
