package config

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/edgeregistry/edge/policy"
)

func TestParseFull(t *testing.T) {
	t.Setenv("EDGE_TEST_TOKEN", "s3cr$t")
	c, err := Parse([]byte(`
region: eu-west
listen: ":5000"
admin_listen: "127.0.0.1:9102"
data_dir: /var/lib/edge
local: {max_size: 200GiB}
limits: {max_upload_size: 512MiB}
routes:
  - name: docker.io
    origin: https://registry-1.docker.io
    default: true
    tag_ttl: 5m
    username: mirror-bot
    password: ${EDGE_TEST_TOKEN}
  - name: ghcr.io
    origin: https://ghcr.io
  - name: team
    hosted: true
    prefix: team/
global:
  backend: dir
`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "eu-west" || c.Local.MaxSize != 200<<30 || c.Limits.MaxUploadSize != 512<<20 {
		t.Fatalf("region %q max_size %d max_upload_size %d", c.Region, c.Local.MaxSize, c.Limits.MaxUploadSize)
	}
	if c.Routes[0].Password != "s3cr$t" || time.Duration(c.Routes[0].TagTTL) != 5*time.Minute {
		t.Fatalf("route 0 = %+v", c.Routes[0])
	}
	if c.Global.Dir.Path != "/var/lib/edge/global" {
		t.Fatalf("global dir = %q", c.Global.Dir.Path)
	}
	pr := c.PolicyRoutes()
	if pr[0].ShortNamePrefix != "library/" || pr[1].ShortNamePrefix != "" || !pr[2].Hosted {
		t.Fatalf("policy routes = %+v", pr)
	}
	if !pr[2].Caps.Has(policy.CapDelete) || pr[0].Caps.Has(policy.CapPush) {
		t.Fatalf("capabilities: hosted %b, pull-through %b", pr[2].Caps, pr[0].Caps)
	}
	if r := c.Redacted(); r.Routes[0].Password == "s3cr$t" || c.Routes[0].Password != "s3cr$t" {
		t.Fatal("Redacted leaks the password or changes the original")
	}
}

func TestParseRejects(t *testing.T) {
	t.Parallel()
	tests := map[string]struct{ yaml, want string }{
		"unknown field":           {"listen: ':5000'\nlisten_addr: x\n", "listen_addr"},
		"missing env":             {"routes: [{name: a, origin: 'https://a', password: '${EDGE_TEST_UNSET_VAR}'}]\n", "EDGE_TEST_UNSET_VAR"},
		"bad origin":              {"routes: [{name: a, origin: 'ftp://a'}]\n", "http(s) URL"},
		"bad ttl":                 {"routes: [{name: a, origin: 'https://a', tag_ttl: soon}]\n", "not a duration"},
		"two defaults":            {"routes: [{name: a, origin: 'https://a', default: true}, {name: b, origin: 'https://b', default: true}]\n", "both the default"},
		"bad backend":             {"global: {backend: floppy}\n", "floppy"},
		"bad size":                {"local: {max_size: lots}\n", "not a size"},
		"bad upload size":         {"limits: {max_upload_size: -1}\n", "not a size"},
		"unknown limit":           {"limits: {max_uploads: 3}\n", "max_uploads"},
		"negative fills":          {"limits: {max_fills: -1}\n", "max_fills"},
		"bad deny pattern":        {"routes: [{name: a, origin: 'https://a', deny: ['[']}]\n", "deny pattern"},
		"bad origin_deletes":      {"routes: [{name: a, origin: 'https://a', origin_deletes: forget}]\n", "want keep or drop"},
		"negative origin limit":   {"routes: [{name: a, origin: 'https://a', origin_limits: {per_minute: -1}}]\n", "origin_limits"},
		"bad listen":              {"listen: nowhere\n", "listen"},
		"storj no access":         {"global: {backend: storj}\n", "access"},
		"deletes on pull-through": {"routes: [{name: a, origin: 'https://a', deletes: false}]\n", "hosted routes only"},
		"hosted without global":   {"routes: [{name: t, hosted: true, prefix: t/}]\nglobal: {backend: none}\n", "needs a global tier"},
		"negative dial":           {"routes: [{name: a, origin: 'https://a', timeouts: {dial: -1s}}]\n", "timeouts.dial must not be negative"},
		"negative cool-down":      {"routes: [{name: a, origin: 'https://a', breaker: {cool_down: -1m}}]\n", "breaker.cool_down"},
		"negative failures":       {"routes: [{name: a, origin: 'https://a', breaker: {failures: -2}}]\n", "breaker.failures"},
		"unknown timeout":         {"routes: [{name: a, origin: 'https://a', timeouts: {read: 1s}}]\n", "read"},
		"breaker on hosted":       {"routes: [{name: t, hosted: true, prefix: t/, breaker: {failures: 1}}]\nglobal: {backend: dir}\n", "pull-through routes only"},
		"forward with password":   {"routes: [{name: a, origin: 'https://a', forward_credentials: true, username: u, password: p}]\n", "takes no username or password"},
		"forward on hosted":       {"routes: [{name: t, hosted: true, prefix: t/, forward_credentials: true}]\nglobal: {backend: dir}\n", "forward_credentials applies to pull-through routes only"},
		"forward anonymous":       {"routes: [{name: a, origin: 'https://a', forward_credentials: true, anonymous_pull: true}]\n", "anonymous_pull cannot be true"},
		"route named fleet":       {"routes: [{name: fleet, origin: 'https://a'}]\n", "the name fleet is the node's own"},
		"token hosts alone":       {"routes: [{name: a, origin: 'https://a', token_hosts: [auth.a]}]\n", "token_hosts applies with forward_credentials only"},
		"token host a URL":        {"routes: [{name: a, origin: 'https://a', forward_credentials: true, token_hosts: ['https://auth.a/']}]\n", "is not a host[:port]"},
		"forward in clear":        {"routes: [{name: a, origin: 'http://registry.example', forward_credentials: true}]\n", "must be https"},
		"forward with grant":      {"routes: [{name: a, origin: 'https://a', forward_credentials: true}]\nauth: {grants: [{user: ci, route: a, actions: [pull]}]}\n", "not grants"},
	}
	for name, tt := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			_, err := Parse([]byte(tt.yaml))
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want it to mention %q", err, tt.want)
			}
		})
	}
}

func TestDefaultAndEmptyFile(t *testing.T) {
	t.Parallel()
	for _, c := range []*Config{Default(), mustParse(t, "")} {
		if err := c.Validate(); err != nil {
			t.Fatal(err)
		}
		if c.Listen != ":5000" || len(c.Routes) != 1 || c.Routes[0].Origin != DockerHub || !c.Routes[0].Default {
			t.Fatalf("defaults = %+v", c)
		}
		if c.Global.Backend != "dir" || c.Global.Dir.Path == "" {
			t.Fatalf("global = %+v", c.Global)
		}
		if c.Limits.MaxUploadSize != 10<<30 || c.Limits.MaxFills != 64 || c.Limits.MaxFillsPerClient != 8 {
			t.Fatalf("limits = %+v, want 10GiB uploads, 64 fills, 8 per client", c.Limits)
		}
	}
	if c := mustParse(t, "limits: {max_fills: 4}\n"); c.Limits.MaxFillsPerClient != 1 {
		t.Fatalf("max_fills: 4 gives %d per client, want 1", c.Limits.MaxFillsPerClient)
	}
	// Zero keeps the default.
	if c := mustParse(t, "limits: {max_upload_size: 0}\n"); c.Limits.MaxUploadSize != 10<<30 {
		t.Fatalf("max_upload_size: 0 gives %d", c.Limits.MaxUploadSize)
	}
}

func mustParse(t *testing.T, s string) *Config {
	t.Helper()
	c, err := Parse([]byte(s))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func TestParseSize(t *testing.T) {
	t.Parallel()
	tests := map[string]Size{"1024": 1024, "1KiB": 1024, "1KB": 1000, "1.5GiB": 3 << 29, "200GiB": 200 << 30, "10MB": 10e6}
	for in, want := range tests {
		got, err := ParseSize(in)
		if err != nil || got != want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
}

func TestHostedDeletesCanBeTurnedOff(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "routes: [{name: t, hosted: true, prefix: t/, deletes: false, anonymous_pull: false}]\nglobal: {backend: dir}\n")
	caps := c.PolicyRoutes()[0].Caps
	if caps.Has(policy.CapDelete) || !caps.Has(policy.CapPush|policy.CapPull) {
		t.Fatalf("caps = %b", caps)
	}
	if c.Routes[0].AnonymousPull == nil || *c.Routes[0].AnonymousPull {
		t.Fatal("anonymous_pull of the route was not read")
	}
}

// A route's anonymous pull is its own setting, the node's when it has none;
// a grant may name only a configured route.
func TestAnonymousPullAndGrantRoutes(t *testing.T) {
	t.Parallel()
	c := mustParse(t, `
routes:
  - {name: a, origin: "https://a.example", default: true}
  - {name: b, origin: "https://b.example", anonymous_pull: true}
  - {name: t, hosted: true, prefix: t/}
global: {backend: dir}
auth:
  anonymous_pull: false
  grants: [{user: ci, route: t, prefix: t/, actions: [push]}]
`)
	for i, want := range []bool{false, true, false} {
		if got := c.PolicyRoutes()[i].AnonymousPull; got != want {
			t.Errorf("route %s: anonymous pull %v, want %v", c.Routes[i].Name, got, want)
		}
	}
	if c.Auth.Grants[0].Route != "t" {
		t.Fatalf("grant route %q", c.Auth.Grants[0].Route)
	}
	if got := mustParse(t, "routes: [{name: a, origin: \"https://a.example\"}]\n").PolicyRoutes()[0].AnonymousPull; !got {
		t.Fatal("anonymous pull is not on by default")
	}
	_, err := Parse([]byte("routes: [{name: a, origin: \"https://a.example\"}]\nauth: {grants: [{user: ci, route: nope, actions: [pull]}]}\n"))
	if err == nil || !strings.Contains(err.Error(), `route "nope" is not configured`) {
		t.Fatalf("a grant of an unknown route: %v", err)
	}
}

func TestForwardCredentialsRoute(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "routes: [{name: a, origin: \"https://a.example\", default: true, forward_credentials: true}]\n")
	if r := c.PolicyRoutes()[0]; !r.ForwardCredentials || r.AnonymousPull {
		t.Fatalf("route %+v: want credentials forwarded and no anonymous pulls (whatever auth.anonymous_pull says)", r)
	}
}

// Clients' passwords cross no network in clear: an http origin is
// accepted only on loopback.
func TestForwardCredentialsOriginOnLoopbackMayBeHTTP(t *testing.T) {
	t.Parallel()
	for _, o := range []string{"http://127.0.0.1:5001", "http://localhost:5001", "http://[::1]:5001"} {
		mustParse(t, "routes: [{name: a, origin: \""+o+"\", forward_credentials: true}]\n")
	}
}

// The example an operator copies must stay valid.
func TestExampleConfig(t *testing.T) {
	t.Setenv("DOCKERHUB_TOKEN", "token")
	c, err := Load("../deploy/config.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if c.Region != "eu-west" || len(c.Routes) != 4 || c.Auth.Htpasswd == "" {
		t.Fatalf("example = %+v", c)
	}
}

// The Kubernetes kit's configuration, as its ConfigMap holds it, is valid
// with the environment the StatefulSet gives it.
func TestKubernetesConfig(t *testing.T) {
	for k, v := range map[string]string{"DOCKERHUB_TOKEN": "token", "STORJ_ACCESS": "grant", "POD_NAME": "edge-0", "POD_NAMESPACE": "edge-eu-west"} {
		t.Setenv(k, v)
	}
	raw, err := os.ReadFile("../deploy/kubernetes/edge.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cm struct {
		Data map[string]string `yaml:"data"`
	}
	if err := yaml.NewDecoder(bytes.NewReader(raw)).Decode(&cm); err != nil { // the first document, the ConfigMap
		t.Fatal(err)
	}
	c, err := Parse([]byte(cm.Data["config.yaml"]))
	if err != nil {
		t.Fatal(err)
	}
	if c.Global.Backend != "storj" || c.Global.Storj.Access != "grant" || c.Fleet.Advertise != "edge-0.edge-peers.edge-eu-west.svc:9103" {
		t.Fatalf("kit config = global %+v, fleet %+v", c.Global, c.Fleet)
	}
}

func TestServerSection(t *testing.T) {
	t.Parallel()
	c, err := Parse([]byte(`
server:
  max_connections: 5000
  max_connections_per_client: 50
  header_timeout: 10s
  idle_timeout: 90s
  body_timeout: 30s
  min_body_rate: 4KiB
  send_timeout: 45s
  shutdown_grace: 20s
  lean_loop: false
`))
	if err != nil {
		t.Fatal(err)
	}
	s := c.Server
	if s.MaxConnections != 5000 || s.MaxConnectionsPerClient != 50 || s.HeaderTimeout != Duration(10*time.Second) || s.IdleTimeout != Duration(90*time.Second) ||
		s.BodyTimeout != Duration(30*time.Second) || s.MinBodyRate != 4<<10 || s.SendTimeout != Duration(45*time.Second) ||
		s.ShutdownGrace != Duration(20*time.Second) || s.LeanLoop == nil || *s.LeanLoop {
		t.Fatalf("server = %+v", s)
	}
	for _, bad := range []string{
		"server: {max_connections: -1}", "server: {max_connections_per_client: -1}", "server: {send_timeout: -1s}", "server: {shutdown_grace: -5s}",
		"server: {max_conns: 10}",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

func TestOriginTimeoutsAndBreaker(t *testing.T) {
	t.Parallel()
	c := mustParse(t, `
routes:
  - name: docker.io
    origin: https://registry-1.docker.io
    timeouts: {dial: 2s, metadata: 4s, blob_idle: 20s}
    breaker: {failures: 5, cool_down: 1m}
  - name: ghcr.io
    origin: https://ghcr.io
    breaker: {disabled: true}
`)
	want := Route{Name: "docker.io", Origin: "https://registry-1.docker.io",
		Timeouts: OriginTimeouts{Dial: Duration(2 * time.Second), Metadata: Duration(4 * time.Second), BlobIdle: Duration(20 * time.Second)},
		Breaker:  Breaker{Failures: 5, CoolDown: Duration(time.Minute)}}
	if got := c.Routes[0]; got.Timeouts != want.Timeouts || got.Breaker != want.Breaker {
		t.Fatalf("route 0 = %+v, want %+v", got, want)
	}
	if !c.Routes[1].Breaker.Disabled || c.Routes[1].Timeouts != (OriginTimeouts{}) {
		t.Fatalf("route 1 = %+v", c.Routes[1])
	}
}

func TestAuthLimits(t *testing.T) {
	t.Parallel()
	c := mustParse(t, `
auth:
  limits: {pair_failures: 5, address_failures: 20, user_checks_per_minute: 3, user_burst: 6, trust: 24h}
  trusted_networks: [10.0.0.0/8, "2001:db8::/48"]
  trusted_proxies: [192.0.2.0/24]
`)
	want := AuthLimits{PairFailures: 5, AddressFailures: 20, UserChecksPerMinute: 3, UserBurst: 6, Trust: Duration(24 * time.Hour)}
	if c.Auth.Limits != want || len(c.Auth.TrustedNetworks) != 2 || c.Auth.TrustedProxies[0] != "192.0.2.0/24" {
		t.Fatalf("auth = %+v", c.Auth)
	}
	for _, bad := range []string{
		"auth: {trusted_networks: [10.0.0.1]}", "auth: {trusted_proxies: [nonsense]}", "auth: {limits: {user_burst: -1}}",
	} {
		if _, err := Parse([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// Decoding errors name the lines of the file as written (comments and
// ${NAME} values included), and Load names the file.
func TestErrorsPointAtTheFilesLines(t *testing.T) {
	t.Setenv("EDGE_TEST_REGION", "eu-west")
	path := filepath.Join(t.TempDir(), "edge.yaml")
	raw := `# the region comes from the environment
region: ${EDGE_TEST_REGION}

# limits
limits:
  max_fills: lots
routes:
  - name: docker.io
    origin: https://registry-1.docker.io
    default: true
    bogus: 1
`
	if err := os.WriteFile(path, []byte(raw), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil {
		t.Fatal("a broken file loaded")
	}
	for _, want := range []string{path + ":", "line 6: cannot unmarshal !!str `lots`", "line 11: field bogus not found"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("%v\nlacks %q", err, want)
		}
	}
}

// local.max_size takes "unlimited", and no other size does.
func TestUnlimitedLocalSize(t *testing.T) {
	t.Parallel()
	if c := mustParse(t, "local: {max_size: unlimited}\n"); c.Local.MaxSize != Unlimited {
		t.Fatalf("max_size %d", c.Local.MaxSize)
	}
	if _, err := Parse([]byte("limits: {max_upload_size: unlimited}\n")); err == nil {
		t.Fatal("max_upload_size: unlimited was taken")
	}
	out, err := yaml.Marshal(Local{MaxSize: Unlimited})
	if err != nil || !strings.Contains(string(out), "unlimited") {
		t.Fatalf("marshal: %s %v", out, err)
	}
}

// A fleet needs the global tier to meet in, and an address the other
// nodes can reach.
func TestFleetSection(t *testing.T) {
	t.Parallel()
	for yaml, want := range map[string]string{
		"fleet: {peer_listen: \"127.0.0.1:9103\"}\nglobal: {backend: none}\n":                                        "global.backend must not be none",
		"fleet: {peer_listen: \":9103\"}\n":                                                                          "fleet.advertise",
		"fleet: {peer_listen: \"0.0.0.0:9103\"}\n":                                                                   "fleet.advertise",
		"fleet: {peer_listen: \"127.0.0.1:9103\", ttl: 10ms}\n":                                                      "fleet.ttl",
		"routes: [{name: hub, origin: \"https://r.example\", default: true, prewarm: {enabled: true}}]\n":            "prewarm needs the fleet",
		"fleet: {peer_listen: \"127.0.0.1:9103\"}\nroutes: [{name: team, hosted: true, prewarm: {enabled: true}}]\n": "prewarm applies to pull-through routes",
	} {
		if _, err := Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: %v, want %q", yaml, err, want)
		}
	}
	c := mustParse(t, "fleet: {peer_listen: \":9103\", advertise: \"edge-0.edge:9103\"}\n")
	if c.Fleet.Advertise != "edge-0.edge:9103" {
		t.Fatalf("fleet %+v", c.Fleet)
	}
	c = mustParse(t, "fleet: {peer_listen: \"127.0.0.1:9103\"}\nroutes: [{name: hub, origin: \"https://r.example\", default: true, prewarm: {enabled: true, window: 1h}}]\n")
	if p := c.PolicyRoutes()[0].Prewarm; p.Budget != 2<<30 || p.Window != time.Hour {
		t.Fatalf("prewarm %+v, want the default budget and a window of 1h", p)
	}
	if p := mustParse(t, "routes: [{name: hub, origin: \"https://r.example\", default: true}]\n").PolicyRoutes()[0].Prewarm; p.Budget != 0 {
		t.Fatalf("prewarm %+v on a route without it", p)
	}
}

// A forwarding route to Docker Hub may send its clients' credentials to
// auth.docker.io, which Docker Hub's origin names as its realm; other
// routes name their token hosts themselves.
func TestForwardTokenHosts(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "routes:\n  - {name: hub, origin: 'https://registry-1.docker.io', forward_credentials: true}\n  - {name: b, origin: 'https://b.example', forward_credentials: true}\n  - {name: c, origin: 'https://c.example', forward_credentials: true, token_hosts: [auth.c.example]}\n")
	for i, want := range [][]string{{"auth.docker.io"}, nil, {"auth.c.example"}} {
		if got := c.Routes[i].ForwardTokenHosts(); !slices.Equal(got, want) {
			t.Errorf("route %s: token hosts %v, want %v", c.Routes[i].Name, got, want)
		}
	}
}
