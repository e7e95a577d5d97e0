package policy

import (
	"errors"
	"testing"
	"time"
)

func testRouter(t *testing.T) *Router {
	t.Helper()
	r, err := NewRouter([]Route{
		{Name: "docker.io", Origin: "https://registry-1.docker.io", Default: true, ShortNamePrefix: "library/"},
		{Name: "ghcr.io", Origin: "https://ghcr.io"},
		{Name: "team", Hosted: true, Prefix: "team/"},
		{Name: "team-infra", Hosted: true, Prefix: "team/infra"},
	})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestResolve(t *testing.T) {
	t.Parallel()
	r := testRouter(t)
	tests := []struct {
		ns, name  string
		wantRoute string
		wantRepo  string
		wantErr   error
	}{
		{"", "library/alpine", "docker.io", "library/alpine", nil},
		{"", "alpine", "docker.io", "library/alpine", nil},
		{"docker.io", "library/alpine", "docker.io", "library/alpine", nil},
		{"ghcr.io", "org/app", "ghcr.io", "org/app", nil},
		{"ghcr.io", "ghcr.io/org/app", "ghcr.io", "org/app", nil},
		{"", "ghcr.io/org/app", "ghcr.io", "org/app", nil},
		{"", "docker.io/library/alpine", "docker.io", "library/alpine", nil},
		{"", "team/app", "team", "team/app", nil},
		{"", "team/infra/db", "team-infra", "team/infra/db", nil},
		{"", "teamx/app", "docker.io", "teamx/app", nil},
		{"quay.io", "org/app", "", "", ErrUnknownNamespace},
		// ?ns= of a hosted route keeps to its prefix.
		{"team", "team/app", "team", "team/app", nil},
		{"team", "priv/app", "", "", ErrUnknownNamespace},
		{"team", "team", "", "", ErrUnknownNamespace},
		{"team-infra", "team/app", "", "", ErrUnknownNamespace},
		{"team-infra", "team/infra/db", "team-infra", "team/infra/db", nil},
	}
	for _, tt := range tests {
		t.Run(tt.ns+"|"+tt.name, func(t *testing.T) {
			t.Parallel()
			rt, repo, err := r.Resolve(tt.ns, tt.name)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if rt.Name != tt.wantRoute || repo != tt.wantRepo {
				t.Fatalf("got %s %s, want %s %s", rt.Name, repo, tt.wantRoute, tt.wantRepo)
			}
		})
	}
}

func TestResolveWithoutDefault(t *testing.T) {
	t.Parallel()
	r, err := NewRouter([]Route{{Name: "ghcr.io", Origin: "https://ghcr.io"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := r.Resolve("", "library/alpine"); !errors.Is(err, ErrUnknownNamespace) {
		t.Fatalf("err = %v, want ErrUnknownNamespace", err)
	}
}

func TestNewRouterRejects(t *testing.T) {
	t.Parallel()
	tests := map[string][]Route{
		"no name":       {{Origin: "https://x"}},
		"slash":         {{Name: "a/b", Origin: "https://x"}},
		"duplicate":     {{Name: "a", Origin: "https://x"}, {Name: "a", Origin: "https://y"}},
		"two defaults":  {{Name: "a", Origin: "https://x", Default: true}, {Name: "b", Origin: "https://y", Default: true}},
		"no origin":     {{Name: "a"}},
		"hosted+origin": {{Name: "a", Hosted: true, Origin: "https://x"}},
	}
	for name, routes := range tests {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if _, err := NewRouter(routes); err == nil {
				t.Fatal("accepted a bad configuration")
			}
		})
	}
}

func TestCapabilities(t *testing.T) {
	t.Parallel()
	r := testRouter(t)
	if c := r.Route("docker.io").Caps; !c.Has(CapPull) || c.Has(CapPush) {
		t.Fatalf("pull-through caps = %b", c)
	}
	if c := r.Route("team").Caps; !c.Has(CapPull | CapPush | CapDelete) {
		t.Fatalf("hosted caps = %b", c)
	}
}

func TestFresh(t *testing.T) {
	t.Parallel()
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rt := &Route{TagTTL: time.Minute}
	if !rt.Fresh(base, base.Add(59*time.Second)) {
		t.Fatal("record inside its TTL is not fresh")
	}
	if rt.Fresh(base, base.Add(time.Minute)) {
		t.Fatal("record at its TTL is fresh")
	}
	if !(&Route{}).Fresh(base, base.Add(DefaultTagTTL-time.Second)) {
		t.Fatal("zero TTL does not default")
	}
	if d := rt.RetryDelay(0); d != 30*time.Second {
		t.Fatalf("RetryDelay = %v", d)
	}
	if d := rt.RetryDelay(2 * time.Second); d != 2*time.Second {
		t.Fatalf("RetryDelay with Retry-After = %v", d)
	}
}

func TestCapabilityNames(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		name string
		c    Capability
	}{{"pull", CapPull}, {"push", CapPush}, {"delete", CapDelete}} {
		got, err := ParseCapability(tt.name)
		if err != nil || got != tt.c || got.String() != tt.name || !got.Single() {
			t.Errorf("%s: %v %v", tt.name, got, err)
		}
	}
	if _, err := ParseCapability("PULL"); err == nil {
		t.Error("ParseCapability accepted PULL")
	}
	if (CapPull | CapPush).Single() || Capability(0).Single() {
		t.Error("a set or nothing passed for one capability")
	}
	if got := (CapPull | CapDelete).String(); got != "pull+delete" {
		t.Errorf("String of a set: %q", got)
	}
	// A route that allows pulls only, as pull-through routes do, does not
	// allow a push.
	if CapPull.Has(CapPush) {
		t.Error("read-only capability has push")
	}
}
