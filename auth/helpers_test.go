package auth_test

import (
	"bytes"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
	"golang.org/x/crypto/bcrypt"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/policy"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// clock is a test clock moved by hand.
type clock = testkit.Clock

func newClock() *clock { return testkit.NewClock(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)) }

// logBuffer collects log output written from many goroutines.
type logBuffer = testkit.Buffer

// writeHtpasswd writes an htpasswd file of users (name: password) with
// cheap bcrypt hashes, and returns its path.
func writeHtpasswd(t *testing.T, dir string, users map[string]string) string {
	t.Helper()
	path := filepath.Join(dir, "htpasswd")
	var b bytes.Buffer
	for u, pw := range users {
		h, err := auth.HashPasswordCost(pw, bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		line, err := auth.HtpasswdLine(u, h)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString(line)
	}
	if err := os.WriteFile(path, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// touch moves the modification time of path forward, so a rewrite is seen
// as a change even on file systems with coarse times.
func touch(t *testing.T, path string, to time.Time) {
	t.Helper()
	if err := os.Chtimes(path, to, to); err != nil {
		t.Fatal(err)
	}
}

// fixture is an Authorizer with the test's clock, logs, metrics and a
// count of bcrypt comparisons.
type fixture struct {
	a        *auth.Authorizer
	clock    *clock
	logs     *logBuffer
	reg      *prometheus.Registry
	compares atomic.Int64
}

func newFixture(t *testing.T, cfg auth.Config, opts ...auth.Option) *fixture {
	t.Helper()
	f := &fixture{clock: newClock(), logs: &logBuffer{}, reg: prometheus.NewRegistry()}
	log := slog.New(slog.NewJSONHandler(f.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	opts = append([]auth.Option{auth.WithClock(f.clock.Now), auth.WithLogger(log), auth.WithRegisterer(f.reg)}, opts...)
	a, err := auth.New(cfg, opts...)
	if err != nil {
		t.Fatal(err)
	}
	auth.SetCompare(a, func(hash, pw []byte) error {
		f.compares.Add(1)
		return bcrypt.CompareHashAndPassword(hash, pw)
	})
	f.a = a
	return f
}

// metric is the value of a counter or gauge of the fixture's registry; 0
// when absent.
func (f *fixture) metric(t *testing.T, name string, labels map[string]string) float64 {
	t.Helper()
	return testkit.Metric(t, f.reg, name, labels)
}

// request is an API request from addr, with Basic credentials unless user
// and pw are both empty.
func request(addr, user, pw string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "/v2/", nil)
	r.RemoteAddr = addr
	if user != "" || pw != "" {
		r.SetBasicAuth(user, pw)
	}
	return r
}

func ptr[T any](v T) *T { return &v }

// The routes of the tests: one that lets anonymous clients pull, one that
// does not.
var (
	openRoute   = &policy.Route{Name: "hub", Origin: "https://hub.example", AnonymousPull: true}
	closedRoute = &policy.Route{Name: "hub", Origin: "https://hub.example"}
)
