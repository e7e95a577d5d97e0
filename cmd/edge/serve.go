package main

import (
	"context"
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
			Logger: log.With("component", "upstream", "route", r.Name), Metrics: originMetrics,
		})
		if err != nil {
			return fmt.Errorf("route %s: %w", r.Name, err)
		}
		origins[r.Name] = c
	}
	opts := []cache.Option{cache.WithLogger(log.With("component", "cache")), cache.WithRegion(cfg.Region), cache.WithRegisterer(reg)}
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
	authz, err := newAuthorizer(cfg.Auth, cfg.Routes, "edge "+cfg.Region, log.With("component", "auth"), reg)
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

	servers := []*listener{{name: "api", addr: cfg.Listen, handler: api, tls: cfg.TLS, lean: true, log: log}}
	if cfg.AdminListen != "" {
		servers = append(servers, &listener{name: "admin", addr: cfg.AdminListen, handler: admin})
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
	ready.Store(false)
	log.Info("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, l := range servers {
		if err := l.shutdown(sctx); err != nil {
			log.Warn("shutdown", "listener", l.name, "err", err)
		}
	}
	if err := engine.Close(sctx); err != nil {
		log.Warn("fills did not finish", "err", err)
	}
	return runErr
}

type listener struct {
	name    string
	addr    string
	handler http.Handler
	tls     *config.TLS
	lean    bool // pulls on the h1 loop, unless TLS is on
	log     *slog.Logger
	ln      net.Listener
	srv     *http.Server
	h1      *h1.Server
}

func (l *listener) listen() error {
	ln, err := net.Listen("tcp", l.addr)
	if err != nil {
		return fmt.Errorf("%s listener: %w", l.name, err)
	}
	l.ln = ln
	l.srv = &http.Server{
		Handler:           l.handler,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       120 * time.Second,
	}
	if l.lean && l.tls == nil {
		l.h1 = &h1.Server{Handler: l.handler, Fallback: l.srv, IdleTimeout: l.srv.IdleTimeout, Log: l.log}
	}
	return nil
}

func (l *listener) shutdown(ctx context.Context) error {
	if l.h1 != nil {
		return l.h1.Shutdown(ctx)
	}
	return l.srv.Shutdown(ctx)
}

func (l *listener) serve() error {
	var err error
	switch {
	case l.h1 != nil:
		err = l.h1.Serve(l.ln)
	case l.tls != nil:
		err = l.srv.ServeTLS(l.ln, l.tls.CertFile, l.tls.KeyFile)
	default:
		err = l.srv.Serve(l.ln)
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
