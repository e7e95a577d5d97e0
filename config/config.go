package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/hosted"
	"github.com/edgeregistry/edge/policy"
	"github.com/edgeregistry/edge/storjtier"
)

// Config is the whole configuration of a node.
type Config struct {
	Region      string `yaml:"region"`
	Listen      string `yaml:"listen"`
	AdminListen string `yaml:"admin_listen"`
	// AdminTokenFile holds the token the admin API asks for (default
	// <data_dir>/admin.token, made with a random token at the first start;
	// $EDGE_ADMIN_TOKEN, when set, is the token instead).
	AdminTokenFile string  `yaml:"admin_token_file,omitempty"`
	DataDir        string  `yaml:"data_dir"`
	TLS            *TLS    `yaml:"tls,omitempty"`
	Local          Local   `yaml:"local"`
	Limits         Limits  `yaml:"limits"`
	Routes         []Route `yaml:"routes"`
	Global         Global  `yaml:"global"`
	GC             GC      `yaml:"gc"`
	Fleet          Fleet   `yaml:"fleet"`
	Auth           Auth    `yaml:"auth"`
	Log            Log     `yaml:"log"`
	Server         Server  `yaml:"server"`
}

// TLS names the certificate the API listener serves.
type TLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// Local is the local disk tier.
type Local struct {
	// MaxSize bounds the blob bytes on disk, or "unlimited" (default: 80%
	// of what the local tier may use of the data directory's file system
	// at start: its free space and the tier's own blobs).
	MaxSize Size `yaml:"max_size"`
}

// Limits bound what one client can make the node spend.
type Limits struct {
	// MaxUploadSize bounds one pushed blob (default 10GiB, ghcr.io's
	// per-layer limit; 0 keeps the default). An upload that would pass it
	// is refused with 413 BLOB_UPLOAD_INVALID.
	MaxUploadSize Size `yaml:"max_upload_size,omitempty"`
	// MaxFills bounds the blob fills running at once (default 64). A fill
	// goes on when its client hangs up, so that the blob is cached for
	// the retry; a pull that would start one more waits for a slot, one
	// that joins a fill in progress never does.
	MaxFills int `yaml:"max_fills,omitempty"`
	// MaxFillsPerClient bounds the fills running that one client (an
	// address, as server.max_connections_per_client counts) started
	// (default max(1, max_fills/8)): no client can take every slot.
	MaxFillsPerClient int `yaml:"max_fills_per_client,omitempty"`
	// FillIdleTimeout stops a fill that receives nothing this long, and is
	// how long a pull waits for a fill slot (default 60s).
	FillIdleTimeout Duration `yaml:"fill_idle_timeout,omitempty"`
	// FillTimeout bounds a whole fill, however steadily it moves (default
	// 1h).
	FillTimeout Duration `yaml:"fill_timeout,omitempty"`
	// OriginMissesPerClient bounds the manifests one client may ask for
	// per minute that no tier holds, each an origin request that Docker
	// Hub counts (default 120, a burst of a quarter of it; -1: unbounded).
	// Past it, the client is answered 429 with Retry-After.
	OriginMissesPerClient float64 `yaml:"origin_misses_per_client,omitempty"`
}

// DefaultOriginMissesPerClient is limits.origin_misses_per_client when
// the configuration leaves it out.
const DefaultOriginMissesPerClient = 120

// validate fills in the defaults of l and checks it.
func (l *Limits) validate() error {
	if l.MaxUploadSize == 0 {
		l.MaxUploadSize = hosted.DefaultMaxUploadSize
	}
	if l.MaxFills == 0 {
		l.MaxFills = cache.DefaultMaxFills
	}
	if l.MaxFillsPerClient == 0 {
		l.MaxFillsPerClient = max(1, l.MaxFills/8)
	}
	if l.OriginMissesPerClient == 0 {
		l.OriginMissesPerClient = DefaultOriginMissesPerClient
	}
	if l.MaxFills < 0 || l.MaxFillsPerClient < 0 || l.FillIdleTimeout < 0 || l.FillTimeout < 0 {
		return errors.New("limits: max_fills, max_fills_per_client, fill_idle_timeout and fill_timeout must not be negative")
	}
	return nil
}

// Route is one origin registry or hosted namespace.
type Route struct {
	Name     string   `yaml:"name"`
	Origin   string   `yaml:"origin,omitempty"`
	Default  bool     `yaml:"default,omitempty"`
	TagTTL   Duration `yaml:"tag_ttl,omitempty"`
	Username string   `yaml:"username,omitempty"`
	Password string   `yaml:"password,omitempty"`
	Hosted   bool     `yaml:"hosted,omitempty"`
	Prefix   string   `yaml:"prefix,omitempty"`
	// ShortNamePrefix is put before single-element names; a default route
	// to Docker Hub gets "library/" unless it sets one.
	ShortNamePrefix *string `yaml:"short_name_prefix,omitempty"`
	// Deletes allows deleting manifests, tags and blobs of a hosted route
	// (default true); users still need a delete grant.
	Deletes *bool `yaml:"deletes,omitempty"`
	// AnonymousPull overrides auth.anonymous_pull for this route.
	AnonymousPull *bool `yaml:"anonymous_pull,omitempty"`
	// Timeouts bound the calls to the origin of a pull-through route.
	Timeouts OriginTimeouts `yaml:"timeouts,omitempty"`
	// Breaker makes requests fail fast while the origin does not answer.
	Breaker Breaker `yaml:"breaker,omitempty"`
	// Allow and Deny choose what the route serves: repository globs,
	// optionally with ":" and a tag glob ("library/*", "*/*:latest").
	Allow []string `yaml:"allow,omitempty"`
	Deny  []string `yaml:"deny,omitempty"`
	// OriginDeletes says what a pull-through route does with a tag its
	// origin no longer has: "drop" (default) answers 404 as the origin
	// does, "keep" goes on serving what the node holds, marked stale.
	OriginDeletes string `yaml:"origin_deletes,omitempty"`
	// OriginLimits bound what the route asks of its origin (zero values:
	// unbounded).
	OriginLimits OriginLimits `yaml:"origin_limits,omitempty"`
	// ForwardCredentials sends each client's own Basic credentials to the
	// origin of a pull-through route, which then decides alone who pulls
	// what: see the README, "Private origin repositories".
	ForwardCredentials bool `yaml:"forward_credentials,omitempty"`
	// TokenHosts are hosts besides the origin's own whose token realm a
	// forwarding route may send its clients' credentials to, when the
	// origin names it (default for a Docker Hub origin: auth.docker.io).
	TokenHosts []string `yaml:"token_hosts,omitempty"`
	// Prewarm fetches what a tag of this pull-through route moved to,
	// ahead of the clients, when a node of another region of the fleet
	// finds it moved at the origin (off by default).
	Prewarm Prewarm `yaml:"prewarm,omitempty"`
}

// OriginLimits bound a route's requests to its origin.
type OriginLimits struct {
	// Concurrent bounds the requests in flight at once, a blob being
	// read counting until its body ends.
	Concurrent int `yaml:"concurrent,omitempty"`
	// PerMinute bounds the requests started per minute, after a burst of
	// a tenth of it.
	PerMinute float64 `yaml:"per_minute,omitempty"`
}

// OriginTimeouts bound a route's calls to its origin; zero means the default.
type OriginTimeouts struct {
	// Dial bounds the TCP connect and the TLS handshake (default 5s).
	Dial Duration `yaml:"dial,omitempty"`
	// Metadata bounds a manifest HEAD or GET, a tag list, the token fetch,
	// each with its retries, and the wait for a blob's response headers
	// (default 10s).
	Metadata Duration `yaml:"metadata,omitempty"`
	// BlobIdle cuts a blob body that sends no byte for this long, the first
	// byte included; the body is resumed from the byte reached (default 30s).
	BlobIdle Duration `yaml:"blob_idle,omitempty"`
}

// Breaker is a route's circuit breaker: after Failures failed requests in a
// row (no answer, or a 5xx), or one that timed out, requests to the origin
// fail at once for CoolDown; then a background probe decides whether it
// closes. Zero means the default.
type Breaker struct {
	Failures int      `yaml:"failures,omitempty"`  // default 3
	CoolDown Duration `yaml:"cool_down,omitempty"` // default 30s
	Disabled bool     `yaml:"disabled,omitempty"`
}

// Global is the global tier shared by all regions: its backend and the
// backend's settings, as storjtier reads them.
type Global = storjtier.Config

// Auth is client authentication for the API (hosted namespaces).
type Auth struct {
	Htpasswd      string  `yaml:"htpasswd,omitempty"`
	AnonymousPull *bool   `yaml:"anonymous_pull,omitempty"`
	Grants        []Grant `yaml:"grants,omitempty"`
	// Limits bound failed logins; zero values keep the defaults.
	Limits AuthLimits `yaml:"limits,omitempty"`
	// TrustedNetworks are client networks (CIDRs) trusted for every user:
	// only the failures of their own (address, user) pair hold them.
	TrustedNetworks []string `yaml:"trusted_networks,omitempty"`
	// TrustedProxies are the proxies (CIDRs) in front of the node whose
	// X-Forwarded-For names the client.
	TrustedProxies []string `yaml:"trusted_proxies,omitempty"`
	// Token is the registry token flow (see AuthToken).
	Token AuthToken `yaml:"token,omitempty"`
}

// AuthLimits bound failed logins. Zero values keep the defaults (10, 50,
// 10, 10, 7 days).
type AuthLimits struct {
	// PairFailures in a minute, for one user from one address, lock that
	// pair out (1 min, doubling up to 30 min).
	PairFailures int `yaml:"pair_failures,omitempty"`
	// AddressFailures in a minute, from one address, lock it out.
	AddressFailures int `yaml:"address_failures,omitempty"`
	// UserChecksPerMinute and UserBurst bound how often one user name is
	// checked from all the addresses not trusted for it.
	UserChecksPerMinute float64 `yaml:"user_checks_per_minute,omitempty"`
	UserBurst           int     `yaml:"user_burst,omitempty"`
	// Trust is how long an address that logged in as a user stays trusted
	// for it.
	Trust Duration `yaml:"trust,omitempty"`
}

// Grant gives a user actions on names under a prefix, on one route or, with
// no route, on every route.
type Grant struct {
	User    string   `yaml:"user"`
	Route   string   `yaml:"route,omitempty"`
	Prefix  string   `yaml:"prefix"`
	Actions []string `yaml:"actions"`
}

// Log sets the node's logging.
type Log struct {
	Level  string `yaml:"level,omitempty"`  // debug, info, warn, error
	Format string `yaml:"format,omitempty"` // text or json
	// Access logs one line a request at info level (default false: a busy
	// node answers thousands a second; the metrics count them all).
	Access bool `yaml:"access,omitempty"`
}

// DockerHub is the origin of the embedded default route.
const DockerHub = "https://registry-1.docker.io"

// Default is the configuration of a node started without a file: the API
// on :5000, data in ./edge-data, Docker Hub as the default route, and a
// directory global tier inside the data directory.
func Default() *Config {
	c := &Config{
		Region:      "local",
		Listen:      ":5000",
		AdminListen: "127.0.0.1:9102",
		DataDir:     "edge-data",
		Limits:      Limits{MaxUploadSize: hosted.DefaultMaxUploadSize},
		Routes: []Route{{
			Name: "docker.io", Origin: DockerHub, Default: true,
			TagTTL: Duration(policy.DefaultTagTTL),
		}},
	}
	c.Global.Backend = "dir"
	c.GC = GC{Retention: Duration(30 * 24 * time.Hour), Grace: Duration(24 * time.Hour), ReadsInterval: Duration(time.Hour)}
	return c
}

// Load reads a configuration file. Settings it leaves out keep the
// defaults of Default, except routes: a file that lists routes replaces the
// default route.
func Load(path string) (*Config, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	c, err := Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

var envRef = regexp.MustCompile(`\$\{([A-Za-z_][A-Za-z0-9_]*)\}`)

// Parse reads a configuration from YAML, expanding ${NAME} in values from
// the environment (comments are left alone).
func Parse(raw []byte) (*Config, error) {
	var doc yaml.Node
	if err := yaml.Unmarshal(raw, &doc); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	var missing []string
	expandEnv(&doc, &missing)
	if len(missing) > 0 {
		return nil, fmt.Errorf("config: environment variables not set: %s", strings.Join(missing, ", "))
	}
	c := Default()
	c.Routes = nil
	if len(doc.Content) > 0 {
		// Decode through the encoder so that unknown keys are errors.
		expanded, err := yaml.Marshal(&doc)
		if err != nil {
			return nil, fmt.Errorf("config: %w", err)
		}
		dec := yaml.NewDecoder(bytes.NewReader(expanded))
		dec.KnownFields(true)
		if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("config: %w", originalLines(err, &doc, expanded))
		}
	}
	if c.Routes == nil {
		c.Routes = Default().Routes
	}
	return c, c.Validate()
}

var lineRef = regexp.MustCompile(`line (\d+):`)

// originalLines rewrites the line numbers of a decoding error, which
// refer to the text re-rendered after ${NAME} expansion, to the lines of
// the file as written: both trees have the same shape, so the node at a
// line of one is the node at the same place of the other.
func originalLines(err error, doc *yaml.Node, rendered []byte) error {
	var again yaml.Node
	if yaml.Unmarshal(rendered, &again) != nil {
		return err
	}
	lines := map[int]int{}
	var walk func(a, b *yaml.Node)
	walk = func(a, b *yaml.Node) {
		if _, seen := lines[a.Line]; !seen {
			lines[a.Line] = b.Line
		}
		for i := range min(len(a.Content), len(b.Content)) {
			walk(a.Content[i], b.Content[i])
		}
	}
	walk(&again, doc)
	msg := lineRef.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(lineRef.FindStringSubmatch(m)[1])
		if orig, ok := lines[n]; ok {
			return fmt.Sprintf("line %d:", orig)
		}
		return m
	})
	return errors.New(msg)
}

// expandEnv replaces ${NAME} in every scalar value under n.
func expandEnv(n *yaml.Node, missing *[]string) {
	if n.Kind == yaml.ScalarNode && strings.Contains(n.Value, "${") {
		n.Value = envRef.ReplaceAllStringFunc(n.Value, func(m string) string {
			name := envRef.FindStringSubmatch(m)[1]
			v, ok := os.LookupEnv(name)
			if !ok {
				*missing = append(*missing, name)
			}
			return v
		})
		n.Style = yaml.DoubleQuotedStyle // the value is a string, whatever it now looks like
	}
	for _, c := range n.Content {
		expandEnv(c, missing)
	}
}

// Validate checks the configuration and fills in what follows from it.
func (c *Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Listen); err != nil {
		errs = append(errs, fmt.Errorf("listen: %w", err))
	}
	if c.Local.MaxSize < 0 && c.Local.MaxSize != Unlimited {
		errs = append(errs, errors.New("local.max_size: want a size or unlimited"))
	}
	if c.Limits.MaxUploadSize < 0 || c.Server.MinBodyRate < 0 {
		errs = append(errs, errors.New("limits.max_upload_size and server.min_body_rate: want a size (unlimited is for local.max_size only)"))
	}
	for _, err := range []error{c.Fleet.validate(c.Global.Backend), c.GC.validate(c.Routes)} {
		if err != nil {
			errs = append(errs, err)
		}
	}
	if c.AdminListen != "" {
		if _, _, err := net.SplitHostPort(c.AdminListen); err != nil {
			errs = append(errs, fmt.Errorf("admin_listen: %w", err))
		}
	}
	if c.DataDir == "" {
		errs = append(errs, errors.New("data_dir must be set"))
	}
	if err := c.Limits.validate(); err != nil {
		errs = append(errs, err)
	}
	if c.TLS != nil && (c.TLS.CertFile == "" || c.TLS.KeyFile == "") {
		errs = append(errs, errors.New("tls needs cert_file and key_file"))
	}
	errs = append(errs, c.checkRoutes()...)
	errs = append(errs, c.checkAuth()...)
	errs = append(errs, c.checkToken()...)
	errs = append(errs, c.checkForwardGrants()...)
	errs = append(errs, c.checkGlobal()...)
	errs = append(errs, c.Server.check()...)
	if err := c.Global.Check(); err != nil {
		errs = append(errs, fmt.Errorf("global: %w", err))
	}
	errs = append(errs, c.Log.check()...)
	if len(errs) > 0 {
		return fmt.Errorf("config: %w", errors.Join(errs...))
	}
	return nil
}

// checkRoutes checks the routes, each and together.
func (c *Config) checkRoutes() []error {
	var errs []error
	for i, r := range c.Routes {
		if r.Origin != "" {
			u, err := url.Parse(r.Origin)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
				errs = append(errs, fmt.Errorf("routes[%d] (%s): origin %q must be an http(s) URL", i, r.Name, r.Origin))
			}
		}
		if r.Name == "fleet" {
			errs = append(errs, fmt.Errorf("routes[%d]: the name fleet is the node's own, for what it fetches for the fleet", i))
		}
		if r.Deletes != nil && !r.Hosted {
			errs = append(errs, fmt.Errorf("routes[%d] (%s): deletes applies to hosted routes only", i, r.Name))
		}
		errs = append(errs, r.Prewarm.check(fmt.Sprintf("routes[%d] (%s)", i, r.Name), r, c.Fleet.PeerListen != "")...)
		if r.TagTTL < 0 {
			errs = append(errs, fmt.Errorf("routes[%d] (%s): tag_ttl must not be negative", i, r.Name))
		}
		switch {
		case r.OriginDeletes != "" && r.OriginDeletes != "keep" && r.OriginDeletes != "drop":
			errs = append(errs, fmt.Errorf("routes[%d] (%s): origin_deletes %q: want keep or drop", i, r.Name, r.OriginDeletes))
		case r.OriginLimits.Concurrent < 0 || r.OriginLimits.PerMinute < 0:
			errs = append(errs, fmt.Errorf("routes[%d] (%s): origin_limits must not be negative", i, r.Name))
		case (r.OriginLimits != OriginLimits{}) && r.Hosted:
			errs = append(errs, fmt.Errorf("routes[%d] (%s): origin_limits applies to pull-through routes only", i, r.Name))
		case r.OriginDeletes != "" && r.Hosted:
			errs = append(errs, fmt.Errorf("routes[%d] (%s): origin_deletes applies to pull-through routes only", i, r.Name))
		}
		errs = append(errs, r.checkOrigin(i)...)
		errs = append(errs, r.checkForward(i)...)
	}
	if _, err := policy.NewRouter(c.PolicyRoutes()); err != nil {
		errs = append(errs, err)
	}
	for _, r := range c.Routes {
		if r.Hosted && (c.Global.Backend == "none" || c.Global.Backend == "") {
			errs = append(errs, fmt.Errorf("hosted route %s needs a global tier: its pushes are written through to it (set global.backend)", r.Name))
		}
	}
	return errs
}

// checkAuth checks the auth section against the routes.
func (c *Config) checkAuth() []error {
	var errs []error
	for _, n := range append(slices.Clone(c.Auth.TrustedNetworks), c.Auth.TrustedProxies...) {
		if _, err := netip.ParsePrefix(n); err != nil {
			errs = append(errs, fmt.Errorf("auth: trusted network %q is not a CIDR prefix", n))
		}
	}
	if l := c.Auth.Limits; l.PairFailures < 0 || l.AddressFailures < 0 || l.UserChecksPerMinute < 0 || l.UserBurst < 0 || l.Trust < 0 {
		errs = append(errs, errors.New("auth.limits: values must not be negative"))
	}
	for i, g := range c.Auth.Grants {
		if g.Route != "" && !slices.ContainsFunc(c.Routes, func(r Route) bool { return r.Name == g.Route }) {
			errs = append(errs, fmt.Errorf("auth.grants[%d]: route %q is not configured", i, g.Route))
		}
	}
	return errs
}

// checkGlobal checks the global tier's backend and fills in the dir
// backend's default path.
func (c *Config) checkGlobal() []error {
	var errs []error
	switch c.Global.Backend {
	case "":
		c.Global.Backend = "none"
	case "none":
	case "dir":
		if c.Global.Dir.Path == "" {
			c.Global.Dir.Path = filepath.Join(c.DataDir, "global")
		}
	case "s3":
		if c.Global.S3.Endpoint == "" || c.Global.S3.Bucket == "" {
			errs = append(errs, errors.New("global.s3 needs endpoint and bucket"))
		}
	case "storj":
		if (c.Global.Storj.Access == "") == (c.Global.Storj.AccessFile == "") || c.Global.Storj.Bucket == "" {
			errs = append(errs, errors.New("global.storj needs a bucket and one of access or access_file"))
		}
	default:
		errs = append(errs, fmt.Errorf("global.backend %q: want storj, s3, dir or none", c.Global.Backend))
	}
	return errs
}

// check checks the log level and format.
func (l Log) check() []error {
	var errs []error
	switch l.Level {
	case "", "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Errorf("log.level %q: want debug, info, warn or error", l.Level))
	}
	switch l.Format {
	case "", "text", "json":
	default:
		errs = append(errs, fmt.Errorf("log.format %q: want text or json", l.Format))
	}
	return errs
}

// checkOrigin checks the origin timeouts and breaker of routes[i].
func (r Route) checkOrigin(i int) []error {
	var errs []error
	if r.Hosted && (r.Timeouts != OriginTimeouts{} || r.Breaker != Breaker{}) {
		errs = append(errs, fmt.Errorf("routes[%d] (%s): timeouts and breaker apply to pull-through routes only", i, r.Name))
	}
	for _, d := range []struct {
		key string
		v   Duration
	}{
		{"timeouts.dial", r.Timeouts.Dial}, {"timeouts.metadata", r.Timeouts.Metadata},
		{"timeouts.blob_idle", r.Timeouts.BlobIdle}, {"breaker.cool_down", r.Breaker.CoolDown},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("routes[%d] (%s): %s must not be negative", i, r.Name, d.key))
		}
	}
	if r.Breaker.Failures < 0 {
		errs = append(errs, fmt.Errorf("routes[%d] (%s): breaker.failures must not be negative", i, r.Name))
	}
	return errs
}

// PolicyRoutes turns the configured routes into the router's routes.
func (c *Config) PolicyRoutes() []policy.Route {
	out := make([]policy.Route, 0, len(c.Routes))
	for _, r := range c.Routes {
		pr := policy.Route{
			Name: r.Name, Origin: r.Origin, Default: r.Default, Hosted: r.Hosted,
			Prefix: r.Prefix, TagTTL: time.Duration(r.TagTTL), Allow: r.Allow, Deny: r.Deny, KeepDeleted: r.OriginDeletes == "keep",
			AnonymousPull: c.Auth.AnonymousPull == nil || *c.Auth.AnonymousPull,
		}
		if r.AnonymousPull != nil {
			pr.AnonymousPull = *r.AnonymousPull
		}
		if r.ForwardCredentials {
			pr.ForwardCredentials, pr.AnonymousPull = true, false
		}
		pr.Prewarm = r.Prewarm.policy(r)
		if r.Hosted {
			pr.Caps = policy.CapPull | policy.CapPush
			if r.Deletes == nil || *r.Deletes {
				pr.Caps |= policy.CapDelete
			}
		}
		switch {
		case r.ShortNamePrefix != nil:
			pr.ShortNamePrefix = *r.ShortNamePrefix
		case r.Default && isDockerHub(r.Origin):
			pr.ShortNamePrefix = "library/"
		}
		out = append(out, pr)
	}
	return out
}

func isDockerHub(origin string) bool {
	u, err := url.Parse(origin)
	if err != nil {
		return false
	}
	switch u.Hostname() {
	case "registry-1.docker.io", "index.docker.io", "docker.io":
		return true
	}
	return false
}

// Redacted returns a copy with secrets replaced, for printing.
func (c *Config) Redacted() *Config {
	cp := *c
	cp.Routes = append([]Route(nil), c.Routes...)
	for i := range cp.Routes {
		if cp.Routes[i].Password != "" {
			cp.Routes[i].Password = "<redacted>"
		}
	}
	if cp.Global.Storj.Access != "" {
		cp.Global.Storj.Access = "<redacted>"
	}
	if cp.Global.S3.SecretKey != "" {
		cp.Global.S3.SecretKey = "<redacted>"
	}
	return &cp
}
