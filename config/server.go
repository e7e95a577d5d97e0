package config

import (
	"errors"
	"fmt"
	"time"
)

// Server is the API listener's limits and timeouts. Zero values keep the
// defaults, which the README lists.
type Server struct {
	// MaxConnections caps the API connections open at once (default:
	// derived from the process's open-file limit). Over it, an idle
	// connection is closed to make room, or the new one gets a 503.
	MaxConnections int `yaml:"max_connections,omitempty"`
	// MaxConnectionsPerClient caps the API connections open at once from
	// one client IP address (IPv6: one /64) (default: an eighth of
	// MaxConnections, at least 16). Over it, one of the client's idle
	// connections is closed to make room, or the new one gets a 503.
	MaxConnectionsPerClient int `yaml:"max_connections_per_client,omitempty"`
	// HeaderTimeout bounds a request header once it has begun (30s).
	HeaderTimeout Duration `yaml:"header_timeout,omitempty"`
	// IdleTimeout bounds the wait for a connection's next request (120s).
	IdleTimeout Duration `yaml:"idle_timeout,omitempty"`
	// BodyTimeout cuts off a request body that sends nothing this long, and
	// is the grace before MinBodyRate applies (60s).
	BodyTimeout Duration `yaml:"body_timeout,omitempty"`
	// MinBodyRate is the rate per second a request body must average once
	// BodyTimeout has passed (1KiB).
	MinBodyRate Size `yaml:"min_body_rate,omitempty"`
	// SendTimeout cuts off a client that takes nothing of a response this
	// long, within two or three times this long (60s); a slow client that keeps
	// taking is not cut off (through net/http: one that takes 64KiB a
	// timeout).
	SendTimeout Duration `yaml:"send_timeout,omitempty"`
	// ShutdownGrace bounds a stop: the requests still in progress after it
	// are broken (30s).
	ShutdownGrace Duration `yaml:"shutdown_grace,omitempty"`
	// LeanLoop serves pulls on the lean HTTP/1.1 loop (default true); false
	// serves every request with net/http. With TLS, net/http serves all.
	LeanLoop *bool `yaml:"lean_loop,omitempty"`
}

// DefaultShutdownGrace is Server.ShutdownGrace when it is zero.
const DefaultShutdownGrace = 30 * time.Second

func (s Server) check() []error {
	var errs []error
	if s.MaxConnections < 0 {
		errs = append(errs, errors.New("server.max_connections must not be negative"))
	}
	if s.MaxConnectionsPerClient < 0 {
		errs = append(errs, errors.New("server.max_connections_per_client must not be negative"))
	}
	for _, d := range []struct {
		name string
		v    Duration
	}{
		{"header_timeout", s.HeaderTimeout}, {"idle_timeout", s.IdleTimeout}, {"body_timeout", s.BodyTimeout},
		{"send_timeout", s.SendTimeout}, {"shutdown_grace", s.ShutdownGrace},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("server.%s must not be negative", d.name))
		}
	}
	return errs
}
