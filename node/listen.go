package node

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"golang.org/x/net/netutil"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/h1"
)

// listener is the API's server, the admin's or the peers', and its socket.
type listener struct {
	name  string
	ln    net.Listener
	api   *h1.Server
	admin *http.Server
}

// maxPeerConns bounds the peer listener's open connections.
const maxPeerConns = 512

// listen builds the API's server, the admin's and the peers' (peer nil:
// none), and opens their sockets.
func (n *Node) listen(api, admin, peer http.Handler, reg prometheus.Registerer) error {
	cfg := n.cfg
	apiSrv, err := newAPIServer(cfg.Server, cfg.TLS, api, n.log.With("component", "http"), reg)
	if err != nil {
		return err
	}
	servers := []*listener{{name: "api", api: apiSrv}}
	addrs := []string{cfg.Listen}
	if cfg.AdminListen != "" {
		servers = append(servers, &listener{name: "admin",
			admin: &http.Server{Handler: admin, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}})
		addrs = append(addrs, cfg.AdminListen)
	}
	if peer != nil {
		servers = append(servers, &listener{name: "peer",
			admin: &http.Server{Handler: peer, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second, MaxHeaderBytes: 16 << 10}})
		addrs = append(addrs, cfg.Fleet.PeerListen)
	}
	for i, l := range servers {
		ln, err := net.Listen("tcp", addrs[i])
		if err != nil {
			return fmt.Errorf("%s listener: %w", l.name, err)
		}
		if l.name == "peer" {
			// Members keep a few connections each (MaxIdleConnsPerHost):
			// more than this many at once is not a fleet's traffic.
			ln = netutil.LimitListener(ln, maxPeerConns)
		}
		l.ln = ln
		n.servers = append(n.servers, l)
	}
	return nil
}

func (l *listener) shutdown(ctx context.Context) error {
	if l.api != nil {
		return l.api.Shutdown(ctx)
	}
	return l.admin.Shutdown(ctx)
}

func (l *listener) serve() error {
	var err error
	if l.api != nil {
		err = l.api.Serve(l.ln)
	} else {
		err = l.admin.Serve(l.ln)
	}
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return fmt.Errorf("%s listener: %w", l.name, err)
}

// stop takes the node out of service: readiness goes false first, so that
// a fleet's load balancer sends new connections elsewhere; the API keeps
// answering (each answer its connection's last) until the requests in
// progress have finished, then closes its listener; the fills stop, each
// keeping what it has for the next start; the admin listener closes last.
// Requests still in progress at the end of the shutdown grace are broken;
// the fills' stop has a budget of its own (fillGrace).
func (n *Node) stop() {
	n.ready.Store(false)
	n.log.Info("shutting down")
	grace := time.Duration(n.cfg.Server.ShutdownGrace)
	if grace == 0 {
		grace = config.DefaultShutdownGrace
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	api, admin := n.servers[0], n.servers[1:]
	if err := api.api.Drain(sctx); err != nil {
		n.log.Warn("requests still in progress at the end of the shutdown grace", "err", err)
	}
	if err := api.shutdown(sctx); err != nil {
		n.log.Warn("shutdown", "listener", api.name, "err", err)
	}
	// The fills get a budget of their own: a grace spent on draining must
	// not cut the suspension of their partials, and the local tier closes
	// only after this.
	fctx, fcancel := context.WithTimeout(context.Background(), fillGrace)
	defer fcancel()
	if err := n.engine.Close(fctx); err != nil {
		n.log.Info("fills stopped at shutdown", "err", err)
	}
	for _, l := range admin {
		if err := l.shutdown(sctx); err != nil {
			n.log.Warn("shutdown", "listener", l.name, "err", err)
		}
	}
}

// fillGrace bounds how long the fills take to stop once the API has
// stopped: each is cancelled at once and keeps what it has as a partial for
// the next start to resume; only a disk that does not answer takes longer.
const fillGrace = 10 * time.Second

// apiMaxHeaderBytes bounds a request header on the API.
const apiMaxHeaderBytes = 64 << 10

// newAPIServer builds the API's server: pulls on the lean loop, the rest
// (everything, with TLS or when the lean loop is off) on net/http, under
// one set of limits and timeouts.
func newAPIServer(cfg config.Server, tlsCfg *config.TLS, handler http.Handler, log *slog.Logger, reg prometheus.Registerer) (*h1.Server, error) {
	fallback := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: time.Duration(cfg.HeaderTimeout),
		IdleTimeout:       time.Duration(cfg.IdleTimeout),
		// A request's header fits in far less (the lean loop takes 4 KiB
		// at most, handing larger ones to this server); net/http's default
		// is 1 MiB.
		MaxHeaderBytes: apiMaxHeaderBytes,
	}
	lean := handler
	if cfg.LeanLoop != nil && !*cfg.LeanLoop {
		lean = nil
	}
	if tlsCfg != nil {
		certs, err := newCertReloader(tlsCfg.CertFile, tlsCfg.KeyFile, time.Now, log)
		if err != nil {
			return nil, err
		}
		fallback.TLSConfig = &tls.Config{GetCertificate: certs.get, MinVersion: tls.VersionTLS12}
		lean = nil
	}
	return h1.New(lean, fallback, h1.WithLogger(log), h1.WithRegisterer(reg),
		h1.WithMaxConns(cfg.MaxConnections), h1.WithMaxConnsPerClient(cfg.MaxConnectionsPerClient),
		h1.WithBodyTimeout(time.Duration(cfg.BodyTimeout), int64(cfg.MinBodyRate)),
		h1.WithSendTimeout(time.Duration(cfg.SendTimeout)))
}
