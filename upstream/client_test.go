package upstream_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/opencontainers/go-digest"
	"go.uber.org/goleak"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/upstream"
)

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// distribution's notification broadcaster lives as long as the process.
		goleak.IgnoreTopFunction("github.com/docker/go-events.(*Broadcaster).run"),
	)
}

// sleeps records the waits of a Client instead of sleeping.
type sleeps struct {
	mu sync.Mutex
	d  []time.Duration
}

func (s *sleeps) sleep(ctx context.Context, d time.Duration) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.d = append(s.d, d)
	return ctx.Err()
}

func (s *sleeps) all() []time.Duration {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]time.Duration(nil), s.d...)
}

// newClient returns a Client for origin whose waits are recorded, not slept.
func newClient(t *testing.T, origin string, mods ...func(*upstream.Config)) (*upstream.Client, *sleeps) {
	t.Helper()
	cfg := upstream.Config{Name: "test", Origin: origin}
	for _, m := range mods {
		m(&cfg)
	}
	c, err := upstream.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	s := &sleeps{}
	upstream.SetSleep(c, s.sleep)
	return c, s
}

func creds(user, pass string) func(*upstream.Config) {
	return func(c *upstream.Config) { c.Username, c.Password = user, pass }
}

func mustDigest(t *testing.T, x interface{ Digest() (v1.Hash, error) }) digest.Digest {
	t.Helper()
	h, err := x.Digest()
	if err != nil {
		t.Fatal(err)
	}
	return digest.Digest(h.String())
}

func readBlob(t *testing.T, c *upstream.Client, repo string, d digest.Digest, offset int64) ([]byte, *upstream.Blob) {
	t.Helper()
	b, err := c.GetBlob(t.Context(), repo, d, offset)
	if err != nil {
		t.Fatalf("GetBlob: %v", err)
	}
	defer b.Close()
	data, err := io.ReadAll(b)
	if err != nil {
		t.Fatalf("read blob: %v", err)
	}
	return data, b
}

func TestNewRejectsBadConfig(t *testing.T) {
	t.Parallel()
	for _, cfg := range []upstream.Config{
		{Origin: "https://ghcr.io"},
		{Name: "x", Origin: "ghcr.io"},
		{Name: "x", Origin: "ftp://ghcr.io"},
		{Name: "x", Origin: "https://ghcr.io/v2/"},
	} {
		if _, err := upstream.New(cfg); err == nil {
			t.Errorf("New(%+v) accepted", cfg)
		}
	}
}

func TestPullAnonymous(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t)
	c, _ := newClient(t, r.URL)
	ctx := t.Context()

	for _, tc := range []struct {
		name string
		opts []origintest.ImageOption
		mt   string
	}{
		{"docker", nil, upstream.MediaTypeDockerManifest},
		{"oci", []origintest.ImageOption{origintest.OCI()}, "application/vnd.oci.image.manifest.v1+json"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			repo := "library/" + tc.name
			img := origintest.PushImage(t, r.URL, repo, "v1", 2, 64<<10, tc.opts...)
			raw, _ := img.RawManifest()
			want := mustDigest(t, img)

			desc, err := c.HeadManifest(ctx, repo, "v1")
			if err != nil {
				t.Fatal(err)
			}
			if desc != (upstream.Descriptor{MediaType: tc.mt, Digest: want, Size: int64(len(raw))}) {
				t.Fatalf("HEAD: %+v, want %s %s %d", desc, tc.mt, want, len(raw))
			}
			for _, ref := range []string{"v1", want.String()} {
				desc, body, err := c.GetManifest(ctx, repo, ref)
				if err != nil {
					t.Fatal(err)
				}
				if desc.Digest != want || desc.MediaType != tc.mt || !bytes.Equal(body, raw) {
					t.Fatalf("GET %s: %+v", ref, desc)
				}
			}
			layers, _ := img.Layers()
			for _, l := range layers {
				d := mustDigest(t, l)
				size, _ := l.Size()
				if got, err := c.HeadBlob(ctx, repo, d); err != nil || got != size {
					t.Fatalf("HeadBlob: %d %v, want %d", got, err, size)
				}
				data, b := readBlob(t, c, repo, d, 0)
				if digest.FromBytes(data) != d || b.Size != size || b.Offset != 0 {
					t.Fatalf("GetBlob: %d bytes, Size %d", len(data), b.Size)
				}
				rest, b := readBlob(t, c, repo, d, 1000)
				if !bytes.Equal(rest, data[1000:]) || b.Size != size || b.Offset != 1000 {
					t.Fatalf("GetBlob at 1000: %d bytes, Size %d", len(rest), b.Size)
				}
			}
		})
	}

	t.Run("index", func(t *testing.T) {
		idx := origintest.PushIndex(t, r.URL, "multi", "latest", "linux/amd64", "linux/arm64")
		desc, body, err := c.GetManifest(ctx, "multi", "latest")
		raw, _ := idx.RawManifest()
		if err != nil || desc.MediaType != "application/vnd.oci.image.index.v1+json" ||
			desc.Digest != mustDigest(t, idx) || !bytes.Equal(body, raw) {
			t.Fatalf("index: %+v %v", desc, err)
		}
	})

	t.Run("tags", func(t *testing.T) {
		img := origintest.RandomImage(t, 1, 128)
		want := []string{"a", "b", "c", "d", "e"}
		for _, tag := range want {
			origintest.Push(t, r.URL, "paged", tag, img)
		}
		var got []string
		last := ""
		for pages := 0; ; pages++ {
			tags, next, err := c.Tags(ctx, "paged", 2, last)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, tags...)
			if next == "" {
				break
			}
			if pages > 5 || next != tags[len(tags)-1] {
				t.Fatalf("page %d: next %q after %q", pages, next, tags)
			}
			last = next
		}
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("tags %q", got)
		}
		all, next, err := c.Tags(ctx, "paged", 0, "")
		if err != nil || len(all) != 5 || next != "" {
			t.Fatalf("all tags: %q %q %v", all, next, err)
		}
	})
}

func TestAuth(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name       string
		opt        origintest.Option
		user, pass string
	}{
		{"anonymous token", origintest.WithTokenAuth("", ""), "", ""},
		{"token with credentials", origintest.WithTokenAuth("mirror-bot", "hub-token"), "mirror-bot", "hub-token"},
		{"basic", origintest.WithBasicAuth("mirror-bot", "pw"), "mirror-bot", "pw"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := origintest.NewRegistry(t, tc.opt)
			img := origintest.PushImage(t, r.URL, "library/app", "v1", 1, 4096)
			p := origintest.NewProxy(t, r.URL)
			c, _ := newClient(t, p.URL, creds(tc.user, tc.pass))
			desc, err := c.HeadManifest(t.Context(), "library/app", "v1")
			if err != nil || desc.Digest != mustDigest(t, img) {
				t.Fatalf("HeadManifest: %+v %v", desc, err)
			}
			layers, _ := img.Layers()
			d := mustDigest(t, layers[0])
			if data, _ := readBlob(t, c, "library/app", d, 0); digest.FromBytes(data) != d {
				t.Fatal("blob differs")
			}
			// Every request to the registry after the first challenge
			// carried credentials.
			for _, req := range p.Requests() {
				if req.Kind != origintest.KindOther && req.Auth == "" {
					t.Errorf("%s %s without Authorization", req.Method, req.Path)
				}
			}
		})
	}
}

func TestTokenReuse(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("bot", "pw"), origintest.WithTokenTTL(time.Hour))
	img := origintest.PushImage(t, r.URL, "team/app", "v1", 1, 1024)
	origintest.PushImage(t, r.URL, "team/other", "v1", 1, 1024)
	layers, _ := img.Layers()
	d := mustDigest(t, layers[0])
	p := origintest.NewProxy(t, r.URL)

	clock := testkit.NewClock(time.Now())
	c, _ := newClient(t, p.URL, creds("bot", "pw"), func(cfg *upstream.Config) { cfg.Clock = testkit.StopClock{Clock: clock} })
	before := r.TokensIssued()

	// Many calls, some concurrent, to one repository: one token.
	ctx := t.Context()
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			if _, err := c.HeadManifest(ctx, "team/app", "v1"); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	for range 5 {
		if _, _, err := c.GetManifest(ctx, "team/app", "v1"); err != nil {
			t.Fatal(err)
		}
		if _, err := c.HeadBlob(ctx, "team/app", d); err != nil {
			t.Fatal(err)
		}
		readBlob(t, c, "team/app", d, 0)
	}
	if _, _, err := c.Tags(ctx, "team/app", 0, ""); err != nil {
		t.Fatal(err)
	}
	if got := r.TokensIssued() - before; got != 1 {
		t.Fatalf("%d tokens for one repository, want 1", got)
	}
	if got := r.TokenScopes()[before]; got != "repository:team/app:pull" {
		t.Fatalf("scope %q", got)
	}
	if got := p.CountPath(http.MethodGet, "/v2/"); got != 1 {
		t.Fatalf("%d pings, want 1", got)
	}
	for _, req := range p.Requests() {
		if req.Kind != origintest.KindOther && req.Status == http.StatusUnauthorized {
			t.Fatalf("%s %s got a 401 with a token in hand", req.Method, req.Path)
		}
	}

	// Another repository needs a token of its own.
	if _, err := c.HeadManifest(ctx, "team/other", "v1"); err != nil {
		t.Fatal(err)
	}
	if got := r.TokensIssued() - before; got != 2 {
		t.Fatalf("%d tokens for two repositories", got)
	}

	// Past its expiry the token is renewed, without a 401 first.
	clock.Advance(time.Hour)
	p.Reset()
	if _, err := c.HeadManifest(ctx, "team/app", "v1"); err != nil {
		t.Fatal(err)
	}
	if got := r.TokensIssued() - before; got != 3 {
		t.Fatalf("%d tokens after expiry, want 3", got)
	}
	if n := p.CountPath(http.MethodGet, origintest.TokenPath); n != 1 || p.CountMatch(origintest.Manifests) != 1 {
		t.Fatalf("after expiry: %+v", p.Requests())
	}
}

func TestPerRouteCredentials(t *testing.T) {
	t.Parallel()
	hub := origintest.NewRegistry(t, origintest.WithTokenAuth("hub-user", "hub-pw"))
	ghcr := origintest.NewRegistry(t, origintest.WithTokenAuth("gh-user", "gh-pw"))
	origintest.PushImage(t, hub.URL, "app", "v1", 1, 256)
	origintest.PushImage(t, ghcr.URL, "app", "v1", 1, 256)

	hubC, _ := newClient(t, hub.URL, creds("hub-user", "hub-pw"))
	ghC, _ := newClient(t, ghcr.URL, creds("gh-user", "gh-pw"))
	for _, c := range []*upstream.Client{hubC, ghC} {
		if _, err := c.HeadManifest(t.Context(), "app", "v1"); err != nil {
			t.Fatal(err)
		}
	}
	// The credentials of one route do not open the other.
	crossed, _ := newClient(t, ghcr.URL, creds("hub-user", "hub-pw"))
	if _, err := crossed.HeadManifest(t.Context(), "app", "v1"); err == nil {
		t.Fatal("hub credentials opened ghcr")
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opt  origintest.Option
	}{
		{"token", origintest.WithTokenAuth("bot", "right")},
		{"basic", origintest.WithBasicAuth("bot", "right")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := origintest.NewRegistry(t, tc.opt)
			origintest.PushImage(t, r.URL, "app", "v1", 1, 256)
			c, _ := newClient(t, r.URL, creds("bot", "wrong"))
			_, err := c.HeadManifest(t.Context(), "app", "v1")
			var e *upstream.Error
			if !errors.As(err, &e) || e.Status != http.StatusUnauthorized {
				t.Fatalf("err %v, want a 401 *Error", err)
			}
			if errors.Is(err, upstream.ErrUnavailable) || errors.Is(err, upstream.ErrNotFound) || e.Temporary() {
				t.Fatalf("a wrong password is neither unavailable nor not found: %v", err)
			}
			if msg := err.Error(); !strings.Contains(msg, "credentials") || !strings.Contains(msg, r.URL) ||
				!strings.Contains(msg, "upstream test") {
				t.Fatalf("unclear message: %s", msg)
			}
		})
	}
}

func TestNotFound(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t)
	origintest.PushImage(t, r.URL, "app", "v1", 1, 256)
	c, _ := newClient(t, r.URL)
	missing := digest.FromString("missing")
	ctx := t.Context()
	for name, call := range map[string]func() error{
		"head manifest tag": func() error { _, err := c.HeadManifest(ctx, "app", "nope"); return err },
		"get manifest tag":  func() error { _, _, err := c.GetManifest(ctx, "app", "nope"); return err },
		"get manifest digest": func() error {
			_, _, err := c.GetManifest(ctx, "app", missing.String())
			return err
		},
		"repository":      func() error { _, err := c.HeadManifest(ctx, "nobody/here", "v1"); return err },
		"head blob":       func() error { _, err := c.HeadBlob(ctx, "app", missing); return err },
		"get blob":        func() error { _, err := c.GetBlob(ctx, "app", missing, 0); return err },
		"tags of no repo": func() error { _, _, err := c.Tags(ctx, "nobody/here", 0, ""); return err },
	} {
		t.Run(name, func(t *testing.T) {
			err := call()
			if !errors.Is(err, upstream.ErrNotFound) || errors.Is(err, upstream.ErrUnavailable) {
				t.Fatalf("err %v, want ErrNotFound", err)
			}
		})
	}
}

func TestInvalidNames(t *testing.T) {
	t.Parallel()
	c, _ := newClient(t, origintest.DeadURL(t)) // never contacted
	for _, call := range []func() error{
		func() error { _, err := c.HeadManifest(t.Context(), "../etc", "v1"); return err },
		func() error { _, err := c.HeadManifest(t.Context(), "App", "v1"); return err },
		func() error { _, _, err := c.GetManifest(t.Context(), "app", "sha256:zz"); return err },
		func() error { _, _, err := c.GetManifest(t.Context(), "app", "v1/../x"); return err },
		func() error { _, err := c.GetBlob(t.Context(), "app", "sha256:short", 0); return err },
	} {
		if err := call(); !errors.Is(err, upstream.ErrInvalid) || errors.Is(err, upstream.ErrUnavailable) {
			t.Errorf("err %v, want ErrInvalid", err)
		}
	}
}

func TestNotARegistry(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.NotFoundHandler())
	t.Cleanup(srv.Close)
	c, _ := newClient(t, srv.URL)
	_, err := c.HeadManifest(t.Context(), "app", "v1")
	var e *upstream.Error
	if !errors.As(err, &e) || e.Op != "ping" || e.Status != http.StatusNotFound || errors.Is(err, upstream.ErrNotFound) {
		t.Fatalf("err %v: a 404 on /v2/ is not a missing image", err)
	}
}

// An origin that answers /v2/ anonymously but wants a token for the
// repository: the client learns the challenge from the 401 and goes on.
func TestChallengeOnRepositoryOnly(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("", ""))
	img := origintest.PushImage(t, r.URL, "app", "v1", 1, 256)
	target, _ := url.Parse(r.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/v2/" {
			return // 200 for everyone
		}
		rp.ServeHTTP(w, req)
	}))
	t.Cleanup(srv.Close)
	c, _ := newClient(t, srv.URL)
	before := r.TokensIssued()
	for range 3 {
		desc, err := c.HeadManifest(t.Context(), "app", "v1")
		if err != nil || desc.Digest != mustDigest(t, img) {
			t.Fatalf("HeadManifest: %+v %v", desc, err)
		}
	}
	if got := r.TokensIssued() - before; got != 1 {
		t.Fatalf("%d tokens, want 1", got)
	}
}

// A caller that leaves while the token is being fetched does not fail the
// others waiting for the same token.
func TestSharedTokenOutlivesFirstCaller(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("", ""))
	origintest.PushImage(t, r.URL, "app", "v1", 1, 256)
	p := origintest.NewProxy(t, r.URL)
	c, _ := newClient(t, p.URL)
	before := r.TokensIssued()

	g := p.Hold(origintest.Match{Path: origintest.TokenPath}, -1)
	ctxA, cancelA := context.WithCancel(t.Context())
	errA := make(chan error, 1)
	go func() { _, err := c.HeadManifest(ctxA, "app", "v1"); errA <- err }()
	<-g.Reached()
	errB := make(chan error, 1)
	go func() { _, err := c.HeadManifest(t.Context(), "app", "v1"); errB <- err }()
	cancelA()
	if err := <-errA; !errors.Is(err, context.Canceled) {
		t.Fatalf("first caller: %v", err)
	}
	g.Release()
	if err := <-errB; err != nil {
		t.Fatalf("second caller: %v", err)
	}
	if got := r.TokensIssued() - before; got != 1 {
		t.Fatalf("%d tokens", got)
	}
}
