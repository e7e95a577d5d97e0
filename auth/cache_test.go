package auth_test

import (
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/policy"
)

func TestVerifyCache(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "pw1", "dev": "pw1"})
	f := newFixture(t, auth.Config{Htpasswd: path}, auth.WithVerifyCache(8, 10*time.Minute))
	login := func(user, pw string) error {
		_, err := f.a.Login(request("192.0.2.1:1", user, pw), false)
		return err
	}
	for range 100 {
		if err := login("ci", "pw1"); err != nil {
			t.Fatal(err)
		}
	}
	if got := f.compares.Load(); got != 1 {
		t.Fatalf("100 good logins cost %d bcrypt comparisons, want 1", got)
	}
	if hits := f.metric(t, "edge_auth_verify_cache_total", map[string]string{"result": "hit"}); hits != 99 {
		t.Fatalf("cache hits %v, want 99", hits)
	}
	// The same password for another user is verified for that user.
	if err := login("dev", "pw1"); err != nil || f.compares.Load() != 2 {
		t.Fatalf("other user: %v, %d comparisons", err, f.compares.Load())
	}
	// Wrong passwords are never remembered: each costs a comparison.
	for i := range 3 {
		if err := login("ci", "wrong"); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatal(err)
		}
		if got := f.compares.Load(); got != int64(3+i) {
			t.Fatalf("wrong password %d: %d comparisons", i, got)
		}
	}
	// An unknown user costs a comparison too, against a dummy hash.
	if err := login("who", "pw1"); !errors.Is(err, auth.ErrUnauthenticated) || f.compares.Load() != 6 {
		t.Fatalf("unknown user: %v, %d comparisons", err, f.compares.Load())
	}
	// A remembered verification expires.
	f.clock.Advance(10*time.Minute - time.Second)
	if err := login("ci", "pw1"); err != nil || f.compares.Load() != 6 {
		t.Fatalf("before expiry: %v, %d comparisons", err, f.compares.Load())
	}
	f.clock.Advance(time.Second)
	if err := login("ci", "pw1"); err != nil || f.compares.Load() != 7 {
		t.Fatalf("after expiry: %v, %d comparisons", err, f.compares.Load())
	}
	// The cache is bounded: past its size the oldest is verified again.
	for i := range 8 {
		if err := auth.SetPasswordCost(path, fmt.Sprint("u", i), "p", bcrypt.MinCost); err != nil {
			t.Fatal(err)
		}
	}
	touch(t, path, time.Now().Add(time.Hour))
	f.clock.Advance(5 * time.Second)
	if err := login("ci", "pw1"); err != nil || f.compares.Load() != 8 {
		t.Fatalf("after a reload: %v, %d comparisons", err, f.compares.Load())
	}
	for i := range 8 {
		if err := login(fmt.Sprint("u", i), "p"); err != nil {
			t.Fatal(err)
		}
	}
	if err := login("ci", "pw1"); err != nil || f.compares.Load() != 17 {
		t.Fatalf("after 8 other users: %v, %d comparisons, want 17", err, f.compares.Load())
	}
}

func TestNoSecretsInLogs(t *testing.T) {
	t.Parallel()
	const (
		password      = "correct-horse-battery-staple"
		wrongPassword = "hunter2-wrong-password"
		typedAsName   = "pa55word-typed-as-user"
		bearer        = "bearer-token-secret"
	)
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": password})
	f := newFixture(t, auth.Config{Htpasswd: path},
		auth.WithFailureLimit(2, time.Minute))
	var errs []error
	do := func(r *http.Request, act policy.Capability) {
		_, err := f.a.Authorize(r, closedRoute, "team/app", act)
		errs = append(errs, err)
	}
	do(request("192.0.2.1:1", "ci", password), policy.CapPush) // denied: no grant
	do(request("192.0.2.1:1", "ci", wrongPassword), policy.CapPull)
	do(request("192.0.2.2:1", typedAsName, password), policy.CapPull)
	do(request("192.0.2.3:1", typedAsName, wrongPassword), policy.CapPull) // locks the name out
	do(request("192.0.2.4:1", typedAsName, wrongPassword), policy.CapPull) // refused
	r := request("192.0.2.5:1", "", "")
	r.Header.Set("Authorization", "Bearer "+bearer)
	do(r, policy.CapPull)
	if _, err := f.a.Login(request("192.0.2.1:1", "ci", wrongPassword), false); err != nil {
		errs = append(errs, err)
	}
	logs := f.logs.String()
	for _, want := range []string{"login failed", `"user":"ci"`, "unknown_user", "refused after repeated failures", "not HTTP Basic"} {
		if !strings.Contains(logs, want) {
			t.Errorf("logs lack %q", want)
		}
	}
	for _, secret := range []string{password, wrongPassword, typedAsName, bearer} {
		if strings.Contains(logs, secret) {
			t.Errorf("logs show %q", secret)
		}
		for _, err := range errs {
			if err != nil && strings.Contains(err.Error(), secret) {
				t.Errorf("error %q shows %q", err, secret)
			}
		}
	}
	if t.Failed() {
		t.Log(logs)
	}
}

// TestConcurrent runs good, bad and anonymous requests from many
// goroutines while the htpasswd file changes under them; run with -race.
func TestConcurrent(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "pw", "dev": "pw"})
	f := newFixture(t, auth.Config{Htpasswd: path, Grants: testGrants},
		auth.WithFailureLimit(1_000_000, time.Minute), auth.WithAddressFailureLimit(1_000_000),
		auth.WithUserRate(1_000_000, 1_000_000), auth.WithReloadInterval(time.Millisecond))
	var wg sync.WaitGroup
	errc := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 20 {
				addr := fmt.Sprintf("192.0.2.%d:1", g)
				var err error
				switch i % 4 {
				case 0:
					_, err = f.a.Authorize(request(addr, "ci", "pw"), closedRoute, "team/app", policy.CapPush)
				case 1:
					_, err = f.a.Authorize(request(addr, "dev", "bad"), closedRoute, "team/app", policy.CapPush)
					if errors.Is(err, auth.ErrUnauthenticated) {
						err = nil
					}
				case 2:
					_, err = f.a.Authorize(request(addr, "", ""), openRoute, "library/alpine", policy.CapPull)
				case 3:
					_, err = f.a.Login(request(addr, "dev", "pw"), false)
				}
				if err != nil {
					errc <- fmt.Errorf("goroutine %d request %d: %w", g, i, err)
					return
				}
			}
		})
	}
	wg.Go(func() {
		for i := range 20 {
			if err := auth.SetPasswordCost(path, "ops", fmt.Sprint("pw", i), bcrypt.MinCost); err != nil {
				errc <- err
				return
			}
			to := time.Now().Add(time.Duration(i+1) * time.Minute)
			if err := os.Chtimes(path, to, to); err != nil {
				errc <- err
				return
			}
			f.clock.Advance(time.Millisecond)
		}
	})
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
}

// BenchmarkAuthorizeCached is the cost of a request whose password was
// verified before: no bcrypt.
func BenchmarkAuthorizeCached(b *testing.B) {
	path := filepath.Join(b.TempDir(), "htpasswd")
	if err := auth.SetPasswordCost(path, "ci", "pw", bcrypt.MinCost); err != nil {
		b.Fatal(err)
	}
	a, err := auth.New(auth.Config{Htpasswd: path, Grants: testGrants})
	if err != nil {
		b.Fatal(err)
	}
	r := request("192.0.2.1:1", "ci", "pw")
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if _, err := a.Authorize(r, closedRoute, "team/app", policy.CapPush); err != nil {
				b.Error(err)
				return
			}
		}
	})
}
