package upstream_test

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/upstream"
)

// faultSetup starts a registry with an image and a blob, a proxy in front of
// it and a Client of the proxy.
func faultSetup(t *testing.T, mods ...func(*upstream.Config)) (*origintest.Proxy, *upstream.Client, *sleeps, []byte, digest.Digest) {
	t.Helper()
	r := origintest.NewRegistry(t)
	origintest.PushImage(t, r.URL, "app", "v1", 1, 1024)
	data, d := origintest.PushRandomBlob(t, r.URL, "app", 4<<20)
	p := origintest.NewProxy(t, r.URL)
	c, s := newClient(t, p.URL, mods...)
	return p, c, s, data, d
}

func TestRateLimit(t *testing.T) {
	t.Parallel()
	t.Run("retry-after fits: waited and retried once", func(t *testing.T) {
		t.Parallel()
		p, c, s, _, _ := faultSetup(t)
		p.RateLimit(origintest.Manifests, "2", 1)
		if _, err := c.HeadManifest(t.Context(), "app", "v1"); err != nil {
			t.Fatal(err)
		}
		if got := s.all(); len(got) != 1 || got[0] != 2*time.Second {
			t.Fatalf("waits %v, want [2s]", got)
		}
		if n := p.Count(http.MethodHead, origintest.KindManifest); n != 2 {
			t.Fatalf("%d HEADs, want 2", n)
		}
	})
	t.Run("http date", func(t *testing.T) {
		t.Parallel()
		p, c, s, _, _ := faultSetup(t)
		p.RateLimit(origintest.Manifests, time.Now().Add(5*time.Second).UTC().Format(http.TimeFormat), 1)
		if _, _, err := c.GetManifest(t.Context(), "app", "v1"); err != nil {
			t.Fatal(err)
		}
		if got := s.all(); len(got) != 1 || got[0] < 3*time.Second || got[0] > 5*time.Second {
			t.Fatalf("waits %v, want about 5s", got)
		}
	})
	t.Run("retry-after too long: temporary error with RetryAfter", func(t *testing.T) {
		t.Parallel()
		p, c, s, _, _ := faultSetup(t)
		p.RateLimit(origintest.Manifests, "3600", 0)
		_, _, err := c.GetManifest(t.Context(), "app", "v1")
		var e *upstream.Error
		if !errors.As(err, &e) || e.Status != http.StatusTooManyRequests || e.RetryAfter != time.Hour ||
			e.Code != "TOOMANYREQUESTS" || !e.Temporary() || !errors.Is(err, upstream.ErrUnavailable) {
			t.Fatalf("err %v", err)
		}
		if len(s.all()) != 0 || p.Count("", origintest.KindManifest) != 1 {
			t.Fatalf("waited %v, %d requests", s.all(), p.Count("", origintest.KindManifest))
		}
	})
	t.Run("only one wait", func(t *testing.T) {
		t.Parallel()
		p, c, s, _, _ := faultSetup(t)
		p.RateLimit(origintest.Manifests, "1", 0)
		if _, err := c.HeadManifest(t.Context(), "app", "v1"); !errors.Is(err, upstream.ErrUnavailable) {
			t.Fatalf("err %v", err)
		}
		if len(s.all()) != 1 || p.Count("", origintest.KindManifest) != 2 {
			t.Fatalf("waits %v, %d requests", s.all(), p.Count("", origintest.KindManifest))
		}
	})
	t.Run("blob", func(t *testing.T) {
		t.Parallel()
		p, c, s, data, d := faultSetup(t)
		p.RateLimit(origintest.BlobGets, "1", 1)
		if got, _ := readBlob(t, c, "app", d, 0); !bytes.Equal(got, data) {
			t.Fatal("blob differs")
		}
		if len(s.all()) != 1 {
			t.Fatalf("waits %v", s.all())
		}
	})
}

func TestServerErrors(t *testing.T) {
	t.Parallel()
	t.Run("5xx until cleared: unavailable after the retries", func(t *testing.T) {
		t.Parallel()
		p, c, s, _, d := faultSetup(t)
		p.FailStatus(origintest.AnyRequest, http.StatusServiceUnavailable, 0)
		_, err := c.HeadBlob(t.Context(), "app", d)
		var e *upstream.Error
		if !errors.As(err, &e) || e.Status != http.StatusServiceUnavailable || !errors.Is(err, upstream.ErrUnavailable) ||
			errors.Is(err, upstream.ErrNotFound) {
			t.Fatalf("err %v", err)
		}
		// The first request is the ping; it fails and is retried as well.
		if n := p.Count("", ""); n != 3 || len(s.all()) != 2 {
			t.Fatalf("%d requests, waits %v; want 3 and 2", n, s.all())
		}
	})
	t.Run("one 502 is retried", func(t *testing.T) {
		t.Parallel()
		p, c, s, _, _ := faultSetup(t)
		p.FailStatus(origintest.Manifests, http.StatusBadGateway, 1)
		if _, _, err := c.GetManifest(t.Context(), "app", "v1"); err != nil {
			t.Fatal(err)
		}
		if len(s.all()) != 1 || p.Count(http.MethodGet, origintest.KindManifest) != 2 {
			t.Fatalf("waits %v", s.all())
		}
	})
	t.Run("dropped connections are retried", func(t *testing.T) {
		t.Parallel()
		p, c, _, _, _ := faultSetup(t)
		p.Drop(origintest.Manifests, 2)
		if _, err := c.HeadManifest(t.Context(), "app", "v1"); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("no retry past the deadline", func(t *testing.T) {
		t.Parallel()
		p, c, s, _, _ := faultSetup(t, func(cfg *upstream.Config) { cfg.MetaTimeout = 50 * time.Millisecond })
		p.FailStatus(origintest.Manifests, http.StatusInternalServerError, 0)
		p.Latency(origintest.Manifests, 30*time.Millisecond)
		if _, err := c.HeadManifest(t.Context(), "app", "v1"); !errors.Is(err, upstream.ErrUnavailable) {
			t.Fatalf("err %v", err)
		}
		if len(s.all()) > 1 {
			t.Fatalf("waits %v past a 50ms budget", s.all())
		}
	})
}

func TestDeadOrigin(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name   string
		origin func(testing.TB) string
	}{
		{"refused", origintest.DeadURL},
		{"never answers", origintest.BlackholeURL},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			origin := tc.origin(t)
			c, _ := newClient(t, origin, func(cfg *upstream.Config) { cfg.MetaTimeout = 300 * time.Millisecond })
			for _, call := range []func() error{
				func() error { _, err := c.HeadManifest(t.Context(), "library/alpine", "latest"); return err },
				func() error {
					_, err := c.GetBlob(t.Context(), "library/alpine", digest.FromString("x"), 0)
					return err
				},
			} {
				err := call()
				var e *upstream.Error
				if !errors.As(err, &e) || !e.Temporary() || !errors.Is(err, upstream.ErrUnavailable) {
					t.Fatalf("err %v, want ErrUnavailable", err)
				}
				if !strings.Contains(err.Error(), origin) || e.Origin != origin {
					t.Fatalf("error does not name the origin %s: %v", origin, err)
				}
			}
		})
	}
}

func TestBlobHeadersTimeout(t *testing.T) {
	t.Parallel()
	p, c, _, _, d := faultSetup(t, func(cfg *upstream.Config) { cfg.MetaTimeout = 200 * time.Millisecond })
	g := p.Hold(origintest.BlobGets, -1)
	defer g.Release()
	_, err := c.GetBlob(t.Context(), "app", d, 0)
	if !errors.Is(err, upstream.ErrUnavailable) {
		t.Fatalf("err %v", err)
	}
}

func TestResume(t *testing.T) {
	t.Parallel()
	t.Run("truncated once", func(t *testing.T) {
		t.Parallel()
		reg := prometheus.NewPedanticRegistry()
		m := upstream.NewMetrics(reg)
		p, c, _, data, d := faultSetup(t, func(cfg *upstream.Config) { cfg.Metrics = m })
		p.Truncate(origintest.BlobGets, 1<<20, 1)
		got, b := readBlob(t, c, "app", d, 0)
		if !bytes.Equal(got, data) || b.Resumes() != 1 {
			t.Fatalf("%d bytes, %d resumes", len(got), b.Resumes())
		}
		reqs := p.Requests()
		var ranges []string
		for _, r := range reqs {
			if r.Kind == origintest.KindBlob {
				ranges = append(ranges, r.Range)
			}
		}
		if len(ranges) != 2 || ranges[0] != "" || ranges[1] != "bytes=1048576-" {
			t.Fatalf("blob requests with ranges %q", ranges)
		}
		if v := testkit.Metric(t, reg, "edge_origin_resumes_total", nil); v != 1 {
			t.Fatalf("resumes_total %v", v)
		}
	})
	t.Run("truncated twice from an offset", func(t *testing.T) {
		t.Parallel()
		p, c, _, data, d := faultSetup(t)
		p.Truncate(origintest.BlobGets, 512<<10, 2)
		got, b := readBlob(t, c, "app", d, 100)
		if !bytes.Equal(got, data[100:]) || b.Resumes() != 2 || b.Size != int64(len(data)) {
			t.Fatalf("%d bytes, %d resumes, Size %d", len(got), b.Resumes(), b.Size)
		}
		var ranges []string
		for _, r := range p.Requests() {
			ranges = append(ranges, r.Range)
		}
		want := []string{"", "bytes=100-", "bytes=524388-", "bytes=1048676-"}
		if strings.Join(ranges, " ") != strings.Join(want, " ") {
			t.Fatalf("ranges %q, want %q", ranges, want)
		}
	})
	t.Run("always truncated: gives up", func(t *testing.T) {
		t.Parallel()
		p, c, _, _, d := faultSetup(t)
		p.Truncate(origintest.BlobGets, 256<<10, 0)
		b, err := c.GetBlob(t.Context(), "app", d, 0)
		if err != nil {
			t.Fatal(err)
		}
		defer b.Close()
		n, err := bytes.NewBuffer(nil).ReadFrom(b)
		if !errors.Is(err, upstream.ErrUnavailable) || n != 4*(256<<10) || b.Resumes() != 3 {
			t.Fatalf("read %d: %v after %d resumes", n, err, b.Resumes())
		}
	})
	t.Run("corrupt body is passed through", func(t *testing.T) {
		t.Parallel()
		p, c, _, data, d := faultSetup(t)
		p.Corrupt(origintest.BlobGets, 1)
		got, _ := readBlob(t, c, "app", d, 0)
		if len(got) != len(data) || digest.FromBytes(got) == d {
			t.Fatal("the Client is not the one to verify blobs, but the bytes should differ here")
		}
	})
}

func TestManifestDigestMismatch(t *testing.T) {
	t.Parallel()
	p, c, _, _, _ := faultSetup(t)
	want, err := c.HeadManifest(t.Context(), "app", "v1")
	if err != nil {
		t.Fatal(err)
	}
	p.Corrupt(origintest.ManifestGets, 0)
	for _, ref := range []string{"v1", want.Digest.String()} {
		_, _, err := c.GetManifest(t.Context(), "app", ref)
		if !errors.Is(err, upstream.ErrDigestMismatch) || errors.Is(err, upstream.ErrUnavailable) {
			t.Fatalf("GET %s: %v, want ErrDigestMismatch", ref, err)
		}
	}
}

func TestMetrics(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewPedanticRegistry()
	p, c, _, _, d := faultSetup(t, func(cfg *upstream.Config) { cfg.Metrics = upstream.NewMetrics(reg) })
	if _, err := c.HeadBlob(t.Context(), "app", d); err != nil {
		t.Fatal(err)
	}
	p.FailStatus(origintest.Manifests, http.StatusBadGateway, 1)
	if _, err := c.HeadManifest(t.Context(), "app", "v1"); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		labels map[string]string
		want   float64
	}{
		{map[string]string{"route": "test", "op": "ping", "code": "200"}, 1},
		{map[string]string{"route": "test", "op": "head_blob", "code": "200"}, 1},
		{map[string]string{"route": "test", "op": "head_manifest", "code": "502"}, 1},
		{map[string]string{"route": "test", "op": "head_manifest", "code": "200"}, 1},
	} {
		if got := testkit.Metric(t, reg, "edge_origin_requests_total", tc.labels); got != tc.want {
			t.Errorf("requests_total%v = %v, want %v", tc.labels, got, tc.want)
		}
	}
}

func hasLabel(m *dto.Metric, k, v string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == k && l.GetValue() == v {
			return true
		}
	}
	return false
}
