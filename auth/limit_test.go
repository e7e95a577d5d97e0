package auth_test

import (
	"errors"
	"testing"
	"time"

	"github.com/edgeregistry/edge/auth"
)

// limitOpts: 3 failures in a minute lock out for 1m, then 2m, up to 4m.
var limitOpts = []auth.Option{auth.WithFailureLimit(3, time.Minute), auth.WithBackoff(time.Minute, 4*time.Minute)}

func TestRateLimitPerUser(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good", "dev": "other"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	login := func(addr, user, pw string) error {
		_, err := f.a.Login(request(addr, user, pw))
		return err
	}
	// Failures for one user from three addresses: the user is locked out,
	// from every address, even with the right password.
	for i, addr := range []string{"192.0.2.1:1", "192.0.2.2:1", "192.0.2.3:1"} {
		if err := login(addr, "ci", "bad"); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("failure %d: %v", i+1, err)
		}
	}
	compares := f.compares.Load()
	err := login("192.0.2.4:1", "ci", "good")
	if !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("after 3 failures: %v, want ErrRateLimited", err)
	}
	if d, _ := auth.RetryAfter(err); d != time.Minute {
		t.Fatalf("Retry-After %v, want 1m", d)
	}
	if f.compares.Load() != compares {
		t.Fatal("a refused login was checked with bcrypt")
	}
	// Other users are not affected.
	if err := login("192.0.2.4:1", "dev", "other"); err != nil {
		t.Fatalf("other user during the lockout: %v", err)
	}
	f.clock.Advance(40 * time.Second)
	if d, _ := auth.RetryAfter(login("192.0.2.4:1", "ci", "good")); d != 20*time.Second {
		t.Fatalf("Retry-After 40s in: %v, want 20s", d)
	}
	f.clock.Advance(20 * time.Second)
	if err := login("192.0.2.4:1", "ci", "good"); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
	if got := f.metric(t, "edge_auth_lockouts_total", map[string]string{"scope": "user"}); got != 1 {
		t.Fatalf("user lockouts %v, want 1", got)
	}
	if got := f.metric(t, "edge_auth_failures_total", map[string]string{"reason": "bad_password"}); got != 3 {
		t.Fatalf("bad_password failures %v, want 3", got)
	}
	if got := f.metric(t, "edge_auth_failures_total", map[string]string{"reason": "rate_limited"}); got != 2 {
		t.Fatalf("rate_limited failures %v, want 2", got)
	}
}

func TestRateLimitBackoffGrows(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	// Each round fails three times from its own address, so only the user
	// name is locked out.
	addr := 0
	failRound := func() {
		t.Helper()
		for range 3 {
			addr++
			if _, err := f.a.Login(request("198.51.100."+itoa(addr)+":1", "ci", "bad")); !errors.Is(err, auth.ErrUnauthenticated) {
				t.Fatalf("failure: %v", err)
			}
		}
	}
	lockedFor := func() time.Duration {
		t.Helper()
		_, err := f.a.Login(request("203.0.113.1:1", "ci", "bad"))
		d, ok := auth.RetryAfter(err)
		if !ok {
			t.Fatalf("not locked out: %v", err)
		}
		return d
	}
	for _, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		failRound()
		if got := lockedFor(); got != want {
			t.Fatalf("lockout %v, want %v", got, want)
		}
		f.clock.Advance(want)
	}
	// Quiet for the ceiling after the last lockout: forgiven, back to 1m.
	f.clock.Advance(4 * time.Minute)
	failRound()
	if got := lockedFor(); got != time.Minute {
		t.Fatalf("lockout after a quiet spell %v, want 1m", got)
	}
	// Failures spread wider than the window never lock out.
	f.clock.Advance(time.Minute)
	for range 10 {
		addr++
		if _, err := f.a.Login(request("198.51.100."+itoa(addr)+":1", "ci", "bad")); !errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrRateLimited) {
			t.Fatalf("spread failure: %v", err)
		}
		f.clock.Advance(31 * time.Second)
	}
}

func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good", "dev": "other"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	// One client tries three user names: the client is locked out, even
	// for a good user; IPv6 addresses in one /64 count together.
	for i, user := range []string{"a", "b", "c"} {
		addr := "[2001:db8:1:2::" + itoa(i+1) + "]:443"
		if _, err := f.a.Login(request(addr, user, "x")); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if _, err := f.a.Login(request("[2001:db8:1:2::99]:1", "ci", "good")); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("same /64 after 3 failures: %v, want ErrRateLimited", err)
	}
	// Other clients are not affected, and a good login does not lift the
	// client's lockout.
	if _, err := f.a.Login(request("[2001:db8:1:3::1]:1", "ci", "good")); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	if _, err := f.a.Login(request("192.0.2.7:1", "dev", "other")); err != nil {
		t.Fatalf("another client: %v", err)
	}
	// Anonymous pulls carry no credentials and are not refused.
	if _, err := f.a.Authorize(request("[2001:db8:1:2::1]:1", "", ""), "library/alpine", auth.Pull); err != nil {
		t.Fatalf("anonymous pull from a locked-out client: %v", err)
	}
	if got := f.metric(t, "edge_auth_lockouts_total", map[string]string{"scope": "client"}); got != 1 {
		t.Fatalf("client lockouts %v, want 1", got)
	}
	if got := f.metric(t, "edge_auth_failures_total", map[string]string{"reason": "unknown_user"}); got != 3 {
		t.Fatalf("unknown_user failures %v, want 3", got)
	}
	f.clock.Advance(time.Minute)
	if _, err := f.a.Login(request("[2001:db8:1:2::99]:1", "ci", "good")); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
}

// TestRateLimitSuccessKeepsFailures: a good login does not clear the
// failures of its user, so whoever knows the password cannot launder the
// guesses of someone else.
func TestRateLimitSuccessKeepsFailures(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	steps := []struct {
		addr, pw string
		want     error
	}{
		{"192.0.2.1:1", "bad", auth.ErrUnauthenticated},
		{"192.0.2.2:1", "bad", auth.ErrUnauthenticated},
		{"192.0.2.3:1", "good", nil},
		{"192.0.2.4:1", "bad", auth.ErrUnauthenticated},
		{"192.0.2.3:1", "good", auth.ErrRateLimited},
	}
	for i, s := range steps {
		_, err := f.a.Login(request(s.addr, "ci", s.pw))
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("step %d: %v, want %v", i+1, err, s.want)
		}
	}
}

func itoa(i int) string {
	if i < 10 {
		return string(rune('0' + i))
	}
	return itoa(i/10) + string(rune('0'+i%10))
}
