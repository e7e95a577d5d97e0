package node

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/sync/errgroup"

	"github.com/edgeregistry/edge/admin"
	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/hosted"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/registry"
	"github.com/edgeregistry/edge/replication"
	"github.com/edgeregistry/edge/storjtier"
	"github.com/edgeregistry/edge/upstream"
)

// Node is one edge node, built and listening, ready to Run.
type Node struct {
	cfg     *config.Config
	log     *slog.Logger
	engine  *cache.Engine
	hosted  *hosted.Service
	writer  *replication.Writer // the write-behind to the global tier
	store   *localtier.Store
	global  *storjtier.Tier   // nil without a global tier
	ops     *admin.Service    // the admin API's work
	fleet   *fleet.Membership // nil without a peer listener
	peers   *peerClient       // the pull path's way to the fleet; nil without one
	id      string            // this process, in the global tier's last-read records
	gcm     *gcMetrics
	prewarm *prewarmMetrics
	router  *policy.Router
	ready   atomic.Bool
	servers []*listener // the API's first
	closers []func()    // in the order to call them, at the end of Run or by Close
	opts    options
	metrics *prometheus.Registry
	api     http.Handler
}

// Option configures a Node.
type Option func(*options)

type options struct {
	log       *slog.Logger
	now       func() time.Time
	afterFunc func(time.Duration, func()) Timer
	originCfg func(*upstream.Config)
	backend   storjtier.Backend
	authz     registry.Authorizer
}

// WithLogger sets the logger; the default writes the configuration's log
// format and level to standard error.
func WithLogger(l *slog.Logger) Option { return func(o *options) { o.log = l } }

// Timer is a timer started by the clock of WithClock; *time.Timer
// satisfies it.
type Timer interface {
	Reset(d time.Duration) bool
	Stop() bool
}

// WithClock runs the node's decisions on a clock of the caller's: now for
// tag freshness, records and backoff, afterFunc for the timers that bound
// fills and retries. Tests move it by hand; the default is real time.
func WithClock(now func() time.Time, afterFunc func(time.Duration, func()) Timer) Option {
	return func(o *options) { o.now, o.afterFunc = now, afterFunc }
}

// WithOriginConfig adjusts the origin client configuration of each
// pull-through route before the client is built.
func WithOriginConfig(f func(*upstream.Config)) Option { return func(o *options) { o.originCfg = f } }

// WithGlobalBackend puts the global tier on b instead of the backend the
// configuration names: a backend shared by several nodes of one process,
// or one that injects faults.
func WithGlobalBackend(b storjtier.Backend) Option { return func(o *options) { o.backend = b } }

// Handler returns the node's API handler, as its API listener serves it
// (without the listener's connection limits and timeouts).
func (n *Node) Handler() http.Handler { return n.api }

// WithAuthorizer decides who may do what with authz instead of the
// authorizer the configuration's auth section describes: an embedder's
// own, or a test's that lets everyone do everything.
func WithAuthorizer(authz registry.Authorizer) Option { return func(o *options) { o.authz = authz } }

// Metrics returns the node's metrics, as its admin listener serves them.
func (n *Node) Metrics() prometheus.Gatherer { return n.metrics }

// NewLogger is the logger that the configuration's log section asks for,
// writing to out.
func NewLogger(c config.Log, out io.Writer) *slog.Logger {
	var level slog.Level
	_ = level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	if c.Format == "json" {
		return slog.New(slog.NewJSONHandler(out, opts))
	}
	return slog.New(slog.NewTextHandler(out, opts))
}

// Check checks what New would refuse beyond the configuration's own
// validation, without opening anything: the TLS certificate and key load,
// the auth section builds (its htpasswd file reads), the admin token file
// and the fleet secret read.
func Check(cfg *config.Config) error {
	var errs []error
	if cfg.TLS != nil {
		if _, err := newCertReloader(cfg.TLS.CertFile, cfg.TLS.KeyFile, time.Now, slog.New(slog.DiscardHandler)); err != nil {
			errs = append(errs, err)
		}
	}
	if router, err := policy.NewRouter(cfg.PolicyRoutes()); err != nil {
		errs = append(errs, err)
	} else if _, err := newAuthorizer(cfg, router, false); err != nil {
		errs = append(errs, err)
	}
	if cfg.AdminTokenFile != "" {
		if _, err := AdminToken(cfg, false); err != nil {
			errs = append(errs, err)
		}
	}
	if cfg.Fleet.PeerListen != "" {
		secret, err := fleetSecret(cfg.Fleet.SecretFile)
		if err == nil {
			_, err = fleet.NewSigner(secret, "check", nil, 0)
		}
		if err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// New builds the node that cfg (already validated) describes and opens its
// listeners. Run it, or Close it.
func New(ctx context.Context, cfg *config.Config, opts ...Option) (n *Node, err error) {
	o := options{}
	for _, opt := range opts {
		opt(&o)
	}
	if o.log == nil {
		o.log = NewLogger(cfg.Log, os.Stderr)
	}
	n = &Node{cfg: cfg, log: o.log, opts: o, id: nodeID(cfg.Region)}
	built := n // a failure's return sets n to nil
	defer func() {
		if err != nil {
			built.Close()
		}
	}()
	promReg := prometheus.NewRegistry()
	n.metrics = promReg
	// Every series carries the node's region, so one Prometheus can hold the fleet.
	reg := prometheus.WrapRegistererWith(prometheus.Labels{"region": cfg.Region}, promReg)
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	n.gcm = newGCMetrics(reg)
	n.prewarm = newPrewarmMetrics(reg)

	router, err := policy.NewRouter(cfg.PolicyRoutes())
	if err != nil {
		return nil, err
	}
	n.router = router
	var sign *fleet.Signer
	var id string
	if cfg.Fleet.PeerListen != "" {
		secret, err := fleetSecret(cfg.Fleet.SecretFile)
		if err != nil {
			return nil, err
		}
		if id, err = nodeIdentity(cfg.DataDir); err != nil {
			return nil, err
		}
		if sign, err = fleet.NewSigner(secret, id, nil, 0); err != nil {
			return nil, err
		}
		n.peers = &peerClient{sign: sign, metrics: newPeerMetrics(reg), idle: 60*time.Second + peerIdleMargin}
		if d := time.Duration(cfg.Limits.FillIdleTimeout); d > 0 {
			n.peers.idle = d + peerIdleMargin
		}
		reg.MustRegister(newMembersCollector(n))
	}
	authz := o.authz
	if authz == nil {
		warnToken(n.log.With("component", "auth"), cfg)
		a, err := newAuthorizer(cfg, router, true, auth.WithLogger(n.log.With("component", "auth")), auth.WithRegisterer(reg))
		if err != nil {
			return nil, err
		}
		authz = a
	}
	if err := n.buildEngine(ctx, reg, authz); err != nil {
		return nil, err
	}
	api := registry.New(router, n.engine, n.hosted, registry.WithLogger(n.log.With("component", "registry")), registry.WithRegisterer(reg),
		registry.WithAccessLog(cfg.Log.Access),
		registry.WithAuthorizer(authz))
	n.api = tokenEndpoint(api, authz)
	n.ops = admin.New(n.store, n.engine, adminGlobal(n.global), router)
	adminAPI, err := n.admin(promReg, reg)
	if err != nil {
		return nil, err
	}
	var peer http.Handler
	if sign != nil {
		peer = n.peerHandler(sign, n.peers.metrics)
	}
	if err := n.listen(n.api, adminAPI, peer, reg); err != nil {
		return nil, err
	}
	if sign != nil {
		advertise := cfg.Fleet.Advertise
		if advertise == "" {
			advertise = n.Addr("peer")
		}
		if err := n.joinFleet(sign, id, advertise); err != nil {
			return nil, err
		}
		n.peers.join(n.fleet)
		n.closers = append([]func(){n.peers.close}, n.closers...)
	}
	return n, nil
}

// buildEngine opens the local tier, the origins and the global tier, puts
// the pull path (the engine) over them, and the push path and the
// write-behind beside it.
func (n *Node) buildEngine(ctx context.Context, reg prometheus.Registerer, authz registry.Authorizer) error {
	cfg, o := n.cfg, n.opts
	// The budget is set once the tier is open: by default it is a share
	// of what the tier may use, its own blobs included.
	store, err := localtier.Open(filepath.Join(cfg.DataDir, "local"), localtier.Options{
		Logger: n.log.With("component", "localtier"), Registerer: reg, Clock: o.now,
	})
	if err != nil {
		return err
	}
	n.store = store
	ours, _ := store.Usage()
	store.SetMaxSize(n.localMaxSize(ours))
	n.closers = append(n.closers, func() {
		if err := store.Close(); err != nil {
			n.log.Error("closing the local tier", "err", err)
		}
	})
	origins, err := n.openOrigins(reg)
	if err != nil {
		return err
	}
	opts := []cache.Option{cache.WithLogger(n.log.With("component", "cache")), cache.WithRegion(cfg.Region), cache.WithRegisterer(reg),
		cache.WithFillLimits(cfg.Limits.MaxFills, cfg.Limits.MaxFillsPerClient), cache.WithMetaTimeout(metaTimeout(cfg.Routes)),
		cache.WithMissLimit(cfg.Limits.OriginMissesPerClient)}
	if d := time.Duration(cfg.Limits.FillIdleTimeout); d > 0 {
		opts = append(opts, cache.WithFillIdleTimeout(d))
	}
	if d := time.Duration(cfg.Limits.FillTimeout); d > 0 {
		opts = append(opts, cache.WithFillTimeout(d))
	}
	if o.now != nil {
		opts = append(opts, cache.WithClock(o.now),
			cache.WithAfterFunc(func(d time.Duration, f func()) cache.Timer { return o.afterFunc(d, f) }))
	}
	global, err := n.openGlobal(ctx)
	if err != nil {
		return err
	}
	if global != nil {
		n.global = global
		opts = append(opts, cache.WithGlobal(global))
	}
	if n.peers != nil {
		opts = append(opts, cache.WithPeers(n.peers), cache.WithTagMoved(n.tagMoved))
	}
	if u, ok := authz.(interface {
		HasUser(name string) bool
	}); ok {
		opts = append(opts, cache.WithNodeUsers(u.HasUser)) // never forwarded to an origin
	}
	if n.engine, err = cache.New(store, origins, opts...); err != nil {
		return err
	}
	return n.buildBeside(reg)
}

// localDiskShare is the share of what the local tier may use of its file
// system that it takes when local.max_size is not set.
const localDiskShare = 0.8

// localMaxSize is the local tier's budget, logged so that the operator
// sees it: local.max_size, none when it says unlimited, or else a share of
// what the tier may use of the data directory's file system as it is at
// start, its free space and the tier's own blobs (ours), so that other
// files on a shared file system are left their room. A data directory on
// tmpfs or NFS is warned of.
func (n *Node) localMaxSize(ours int64) int64 {
	switch kind := diskKind(n.cfg.DataDir); kind {
	case "tmpfs":
		n.log.Warn("the data directory is on tmpfs: the local tier takes memory and is lost at a reboot", "data_dir", n.cfg.DataDir)
	case "nfs":
		n.log.Warn("the data directory is on NFS: the index's locks and the blobs' renames are not safe there; use a local disk", "data_dir", n.cfg.DataDir)
	}
	switch size := n.cfg.Local.MaxSize; {
	case size == config.Unlimited:
		n.log.Info("local tier budget unlimited", "from", "local.max_size")
		return 0
	case size > 0:
		n.log.Info("local tier budget", "max_size", int64(size), "from", "local.max_size")
		return int64(size)
	}
	total, free := diskStats(n.cfg.DataDir)
	if total <= 0 {
		n.log.Warn("local tier budget unlimited: the data directory's file system cannot be read; set local.max_size")
		return 0
	}
	size := int64(float64(min(free+ours, total)) * localDiskShare)
	n.log.Info("local tier budget", "max_size", size, "from",
		fmt.Sprintf("%.0f%% of what the local tier may use of its file system (free %d, its own %d, of %d)", 100*localDiskShare, free, ours, total))
	return size
}

// buildBeside builds what runs beside the engine: the push path of the
// hosted routes and the write-behind to the global tier.
func (n *Node) buildBeside(reg prometheus.Registerer) error {
	cfg, o := n.cfg, n.opts
	hopts := []hosted.Option{hosted.WithLogger(n.log.With("component", "hosted")), hosted.WithRegion(cfg.Region),
		hosted.WithMaxUploadSize(int64(cfg.Limits.MaxUploadSize)), hosted.WithMetaTimeout(metaTimeout(cfg.Routes))}
	ropts := []replication.Option{replication.WithLogger(n.log.With("component", "replication")),
		replication.WithRegion(cfg.Region), replication.WithRegisterer(reg), replication.WithWake(n.engine.Enqueued()),
		replication.WithRecovered(n.engine.Recovered())}
	if o.now != nil {
		hopts = append(hopts, hosted.WithClock(o.now))
		ropts = append(ropts, replication.WithClock(o.now),
			replication.WithAfterFunc(func(d time.Duration, f func()) replication.Timer { return o.afterFunc(d, f) }))
	}
	var err error
	if n.hosted, err = hosted.New(n.store, hosted.RecordOf(n.engine.Global()), n.engine, hopts...); err != nil {
		return err
	}
	n.writer, err = replication.New(n.store, n.engine.Global(), ropts...)
	return err
}

// openOrigins builds the origin client of each pull-through route, by
// route name.
func (n *Node) openOrigins(reg prometheus.Registerer) (map[string]cache.Origin, error) {
	originMetrics := upstream.NewMetrics(reg)
	origins := make(map[string]cache.Origin)
	for _, r := range n.cfg.Routes {
		if r.Hosted {
			continue
		}
		oc := originConfig(r, n.log.With("component", "upstream", "route", r.Name), originMetrics)
		if n.opts.originCfg != nil {
			n.opts.originCfg(&oc)
		}
		c, err := upstream.New(oc)
		if err != nil {
			return nil, fmt.Errorf("route %s: %w", r.Name, err)
		}
		n.closers = append([]func(){c.Close}, n.closers...)
		origins[r.Name] = c
	}
	return origins, nil
}

// openGlobal opens the global tier: the backend the configuration names,
// or the one WithGlobalBackend gave; nil without one.
func (n *Node) openGlobal(ctx context.Context) (*storjtier.Tier, error) {
	backend := n.opts.backend
	if backend == nil {
		var err error
		if backend, err = storjtier.Open(ctx, n.cfg.Global); err != nil {
			return nil, fmt.Errorf("global tier: %w", err)
		}
		if c, ok := backend.(io.Closer); ok {
			n.closers = append([]func(){func() { _ = c.Close() }}, n.closers...)
		}
	}
	if backend == nil {
		return nil, nil
	}
	topts := []storjtier.Option{storjtier.WithRegion(n.cfg.Region)}
	if n.opts.now != nil {
		topts = append(topts, storjtier.WithClock(n.opts.now))
	}
	return storjtier.New(backend, topts...), nil
}

// metaTimeout bounds the engine's metadata calls: 15s, or longer where a
// route gives its origin longer, so that the route's own timeout is what
// ends a slow call, never the engine's.
func metaTimeout(routes []config.Route) time.Duration {
	d := 15 * time.Second
	for _, r := range routes {
		d = max(d, time.Duration(r.Timeouts.Metadata)+5*time.Second)
	}
	return d
}

// originConfig is the origin client's configuration of route r.
func originConfig(r config.Route, log *slog.Logger, m *upstream.Metrics) upstream.Config {
	return upstream.Config{
		Name: r.Name, Origin: r.Origin, Username: r.Username, Password: r.Password, ForwardCredentials: r.ForwardCredentials, TokenHosts: r.ForwardTokenHosts(),
		DialTimeout: time.Duration(r.Timeouts.Dial), MetaTimeout: time.Duration(r.Timeouts.Metadata),
		BlobIdleTimeout: time.Duration(r.Timeouts.BlobIdle),
		Limits:          upstream.Limits{Concurrent: r.OriginLimits.Concurrent, PerMinute: r.OriginLimits.PerMinute},
		Breaker: upstream.BreakerConfig{
			Failures: r.Breaker.Failures, CoolDown: time.Duration(r.Breaker.CoolDown), Disabled: r.Breaker.Disabled,
		},
		Logger: log, Metrics: m,
	}
}

// admin is the admin listener's handler: metrics, profiles, health and
// readiness, and the admin API behind its token.
func (n *Node) admin(promReg *prometheus.Registry, reg prometheus.Registerer) (http.Handler, error) {
	mux := http.NewServeMux()
	if n.cfg.AdminListen != "" {
		token, err := AdminToken(n.cfg, true)
		if err != nil {
			return nil, err
		}
		if host, _, _ := net.SplitHostPort(n.cfg.AdminListen); !isLoopback(host) {
			n.log.Warn("the admin listener is not on loopback: its token and metrics travel in clear text; keep it on a private network",
				"admin_listen", n.cfg.AdminListen)
		}
		mux.Handle("/admin/", admin.Handler(n.ops, token, n.log.With("component", "admin")))
	}
	mux.Handle("GET /metrics", promhttp.HandlerFor(promReg, promhttp.HandlerOpts{Registry: reg}))
	mux.HandleFunc("GET /debug/pprof/", pprof.Index)
	mux.HandleFunc("GET /debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("GET /debug/pprof/trace", pprof.Trace)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, "ok\n") })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, _ *http.Request) {
		if !n.ready.Load() {
			http.Error(w, "not ready", http.StatusServiceUnavailable)
			return
		}
		_, _ = io.WriteString(w, "ready\n")
	})
	return mux, nil
}

// isLoopback reports whether host names only this machine.
func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// adminGlobal is the global tier as the admin API uses it; nil stays an
// untyped nil.
func adminGlobal(t *storjtier.Tier) admin.Global {
	if t == nil {
		return nil
	}
	return t
}

// Admin returns the admin API's work, as the admin listener serves it:
// for a prefetch run from the command line, an embedder, a test.
func (n *Node) Admin() *admin.Service { return n.ops }

// Addr is the address a listener ("api", "admin" or "peer") listens on,
// or "".
func (n *Node) Addr(name string) string {
	for _, l := range n.servers {
		if l.name == name {
			return l.ln.Addr().String()
		}
	}
	return ""
}

// Run serves until ctx ends or a listener fails, then stops the node and
// releases everything it holds. It returns the failure, if any.
func (n *Node) Run(ctx context.Context) error {
	defer n.Close()
	g, gctx := errgroup.WithContext(ctx)
	// Work beside the API runs until the API has stopped, not only until
	// ctx ends: a write-behind item fed by the last requests is not lost.
	sideCtx, stopSide := context.WithCancel(context.WithoutCancel(ctx))
	defer stopSide()
	side := []func(context.Context){
		func(ctx context.Context) { n.writer.Run(ctx, 4) },
		func(ctx context.Context) { cleanUploads(ctx, n.store, n.log) },
		n.reportReads, n.collectGarbage, n.runFleet, n.runPrewarm,
	}
	sideDone := make(chan struct{}, len(side))
	for _, f := range side {
		go func() { defer func() { sideDone <- struct{}{} }(); f(sideCtx) }()
	}
	for _, l := range n.servers {
		n.log.Info("listening", "listener", l.name, "addr", l.ln.Addr().String())
		g.Go(l.serve)
	}
	n.ready.Store(true)
	n.log.Info("edge node started", "region", n.cfg.Region, "routes", len(n.cfg.Routes), "data_dir", n.cfg.DataDir,
		"global", n.cfg.Global.Backend)
	for _, r := range n.cfg.Routes {
		n.log.Info("route", "name", r.Name, "origin", r.Origin, "hosted", r.Hosted, "default", r.Default, "prefix", r.Prefix)
	}
	g.Go(func() error {
		<-gctx.Done()
		n.stop()
		return nil
	})
	err := g.Wait()
	stopSide()
	for range side {
		<-sideDone
	}
	return err
}

// Close releases what the node holds: its listeners, origins, global tier
// and local tier. Run calls it at its end.
func (n *Node) Close() {
	for _, l := range n.servers {
		_ = l.ln.Close()
	}
	for _, c := range n.closers {
		c()
	}
	n.servers, n.closers = nil, nil
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

// WaitWriteBehind waits until the write-behind queue is empty, so that
// the global tier has what the node fetched, or for at most limit.
func (n *Node) WaitWriteBehind(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		left, err := n.store.QueueLen()
		if err != nil || left == 0 {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the write-behind still holds %d items: %w", left, ctx.Err())
		case <-t.C:
		}
	}
}
