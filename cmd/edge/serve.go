package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/h1"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/registry"
	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/upstream"
)

// serve wires the node together and runs it until ctx ends.
func serve(ctx context.Context, cfg *config.Config, logOut io.Writer) error {
	log := newLogger(cfg.Log, logOut)
	promReg := prometheus.NewRegistry()
	// Every series carries the node's region, so one Prometheus can hold the fleet.
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"region": cfg.Region}, promReg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	router, err := policy.NewRouter(cfg.PolicyRoutes())
	if err != nil {
		return err
	}
	store, err := localtier.Open(filepath.Join(cfg.DataDir, "local"), localtier.Options{
		MaxSize: int64(cfg.Local.MaxSize), Logger: log.With("component", "localtier"), Registerer: reg,
	})
	if err != nil {
		return err
	}
	defer func() {
		if err := store.Close(); err != nil {
			log.Error("closing the local tier", "err", err)
		}
	}()

	originMetrics := upstream.NewMetrics(reg)
	origins := make(map[string]cache.Origin)
	for _, r := range cfg.Routes {
		if r.Hosted {
			continue
		}
		c, err := upstream.New(upstream.Config{
			Name: r.Name, Origin: r.Origin, Username: r.Username, Password: r.Password,
			DialTimeout: time.Duration(r.Timeouts.Dial), MetaTimeout: time.Duration(r.Timeouts.Metadata),
			BlobIdleTimeout: time.Duration(r.Timeouts.BlobIdle),
			Breaker: upstream.BreakerConfig{
				Failures: r.Breaker.Failures, CoolDown: time.Duration(r.Breaker.CoolDown), Disabled: r.Breaker.Disabled,
			},
			Logger: log.With("component", "upstream", "route", r.Name), Metrics: originMetrics,
		})
		if err != nil {
			return fmt.Errorf("route %s: %w", r.Name, err)
		}
		defer c.Close()
		origins[r.Name] = c
	}
	opts := []cache.Option{cache.WithLogger(log.With("component", "cache")), cache.WithRegion(cfg.Region), cache.WithRegisterer(reg),
		cache.WithMaxUploadSize(int64(cfg.Limits.MaxUploadSize))}
	backend, err := storjtier.Open(ctx, cfg.Global)
	if err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	if c, ok := backend.(io.Closer); ok {
		defer func() { _ = c.Close() }()
	}
	if backend != nil {
		opts = append(opts, cache.WithGlobal(storjtier.New(backend, storjtier.WithRegion(cfg.Region))))
	}
	engine, err := cache.New(store, origins, opts...)
	if err != nil {
		return err
	}
	engine.RegisterQueueGauge(reg)
	wbCtx, stopWriteBehind := context.WithCancel(context.WithoutCancel(ctx))
	wbDone := make(chan struct{}, 2)
	go func() { defer func() { wbDone <- struct{}{} }(); engine.RunWriteBehind(wbCtx, 4) }()
	go func() { defer func() { wbDone <- struct{}{} }(); cleanUploads(wbCtx, store, log) }()
	defer func() { stopWriteBehind(); <-wbDone; <-wbDone }()
	authz, err := newAuthorizer(cfg.Auth, router.Routes(), "edge "+cfg.Region, log.With("component", "auth"), reg)
	if err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	api := registry.New(router, engine, registry.WithLogger(log.With("component", "registry")), registry.WithRegisterer(reg),
		registry.WithAuthorizer(authz))

	var ready atomic.Bool
	admin := http.NewServeMux()
	admin.Handle("GET /metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{Registry: reg}))
	admin.HandleFunc("GET /debug/pprof/", pprof.Index)
	admin.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	admin.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	admin.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	admin.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})

	return runNode(ctx, cfg, log, reg, api, admin, &ready, engine)
}

// runNode serves the API and the admin listener until ctx ends or one of them
// fails, then stops the node.
func runNode(ctx context.Context, cfg *config.Config, log *slog.Logger, reg prometheus.Registerer,
	api, admin http.Handler, ready *atomic.Bool, engine *cache.Engine) error {
	apiSrv, err := newAPIServer(cfg.Server, cfg.TLS, api, log.With("component", "http"), reg)
	if err != nil {
		return err
	}
	servers := []*listener{{name: "api", addr: cfg.Listen, api: apiSrv}}
	if cfg.AdminListen != "" {
		servers = append(servers, &listener{name: "admin", addr: cfg.AdminListen,
			admin: &http.Server{Handler: admin, ReadHeaderTimeout: 30 * time.Second, IdleTimeout: 120 * time.Second}})
	}
	errc := make(chan error, len(servers))
	for i, l := range servers {
		if err := l.listen(); err != nil {
			for _, open := range servers[:i] {
				_ = open.ln.Close()
			}
			return err
		}
	}
	for _, l := range servers {
		log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
		go func() { errc <- l.serve() }()
	}
	ready.Store(true)
	log.Info("edge node started", "region", cfg.Region, "routes", len(cfg.Routes), "data_dir", cfg.DataDir,
		"global", cfg.Global.Backend)

	var runErr error
	select {
	case <-ctx.Done():
	case runErr = <-errc:
	}
	stop(log, cfg.Server, ready, servers, engine)
	return runErr
}

// stop takes the node out of service: readiness goes false first, so that
// a fleet's load balancer sends new connections elsewhere; the API keeps
// answering (each answer its connection's last) until the requests in
// progress have finished, then closes its listener; the fills no client
// waits for any more get a moment, then stop; the admin listener closes
// last. All of it within the shutdown grace, after which the requests
// still in progress are broken.
func stop(log *slog.Logger, cfg config.Server, ready *atomic.Bool, servers []*listener, engine *cache.Engine) {
	ready.Store(false)
	log.Info("shutting down")
	grace := time.Duration(cfg.ShutdownGrace)
	if grace == 0 {
		grace = config.DefaultShutdownGrace
	}
	sctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()
	api, admin := servers[0], servers[1:]
	if err := api.api.Drain(sctx); err != nil {
		log.Warn("requests still in progress at the end of the shutdown grace", "err", err)
	}
	if err := api.shutdown(sctx); err != nil {
		log.Warn("shutdown", "listener", api.name, "err", err)
	}
	fctx, fcancel := context.WithTimeout(sctx, fillGrace)
	defer fcancel()
	if err := engine.Close(fctx); err != nil {
		log.Info("fills stopped at shutdown", "err", err)
	}
	for _, l := range admin {
		if err := l.shutdown(sctx); err != nil {
			log.Warn("shutdown", "listener", l.name, "err", err)
		}
	}
}

// fillGrace is how long the fills that no client waits for any more may
// run on once the API has stopped; then they stop, to be made again by
// whichever node a client asks next.
const fillGrace = time.Second

// newAPIServer builds the API's server: pulls on the lean loop, the rest
// (everything, with TLS or when the lean loop is off) on net/http, under
// one set of limits and timeouts.
func newAPIServer(cfg config.Server, tlsCfg *config.TLS, handler http.Handler, log *slog.Logger, reg prometheus.Registerer) (*h1.Server, error) {
	fallback := &http.Server{
		Handler:           handler,
		ReadHeaderTimeout: time.Duration(cfg.HeaderTimeout),
		IdleTimeout:       time.Duration(cfg.IdleTimeout),
	}
	lean := handler
	if cfg.LeanLoop != nil && !*cfg.LeanLoop {
		lean = nil
	}
	if tlsCfg != nil {
		cert, err := tls.LoadX509KeyPair(tlsCfg.CertFile, tlsCfg.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("tls: %w", err)
		}
		fallback.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
		lean = nil
	}
	return h1.New(lean, fallback, h1.WithLogger(log), h1.WithRegisterer(reg),
		h1.WithMaxConns(cfg.MaxConnections),
		h1.WithBodyTimeout(time.Duration(cfg.BodyTimeout), int64(cfg.MinBodyRate)),
		h1.WithSendTimeout(time.Duration(cfg.SendTimeout)))
}

// listener is the API's server or the admin's, and its socket.
type listener struct {
	name  string
	addr  string
	ln    net.Listener
	api   *h1.Server
	admin *http.Server
}

func (l *listener) listen() error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", l.name, err)
	}
	l.ln = ln
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

func newLogger(c config.Log, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// uploadIdle is how long an upload session may receive nothing before it
// counts as abandoned and is removed.
const uploadIdle = 24 * time.Hour

// cleanUploads removes abandoned upload sessions at start and every hour.
func cleanUploads(ctx context.Context, store *localtier.Store, log *slog.Logger) {
	t := time.NewTicker(time.Hour)
	defer t.Stop()
	for {
		if n, err := store.CleanUploads(ctx, uploadIdle); err != nil {
			log.Warn("cannot clean upload sessions", "err", err)
		} else if n > 0 {
			log.Info("removed abandoned upload sessions", "count", n)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
