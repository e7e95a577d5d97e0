package auth_test

import (
	"errors"
	"fmt"
	"net/netip"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/policy"
)

// limitOpts: 3 failures of a user from one address in a minute lock that
// pair out for 1m, then 2m, up to 4m; 5 failures from one address lock the
// address out; a user name is checked at most 6 times a minute, burst 4,
// from addresses that have not logged in as it.
var limitOpts = []auth.Option{
	auth.WithFailureLimit(3, time.Minute), auth.WithBackoff(time.Minute, 4*time.Minute),
	auth.WithAddressFailureLimit(5), auth.WithUserRate(6, 4),
}

func login(f *fixture, addr, user, pw string) error {
	_, err := f.a.Login(request(addr, user, pw), false)
	return err
}

// TestGuessersCannotLockOutTheOwner: failures for a user from anywhere else,
// however many, never refuse the owner's address, which logged in before.
func TestGuessersCannotLockOutTheOwner(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	const owner = "192.0.2.1:1"
	if err := login(f, owner, "ci", "good"); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		err := login(f, fmt.Sprintf("198.51.100.%d:1", i+1), "ci", fmt.Sprintf("guess-%d", i))
		if !errors.Is(err, auth.ErrUnauthenticated) && !errors.Is(err, auth.ErrRateLimited) {
			t.Fatalf("guess %d: %v", i, err)
		}
		if err := login(f, owner, "ci", "good"); err != nil {
			t.Fatalf("the owner after %d guesses elsewhere: %v", i+1, err)
		}
	}
	// And when the password is checked again, not only from the cache of
	// the last check: the htpasswd file changed.
	writeHtpasswd(t, filepath.Dir(path), map[string]string{"ci": "good"})
	touch(t, path, time.Now().Add(time.Hour))
	f.clock.Advance(10 * time.Second)
	before := f.compares.Load()
	if err := login(f, owner, "ci", "good"); err != nil {
		t.Fatalf("the owner after a reload: %v", err)
	}
	if f.compares.Load() != before+1 {
		t.Fatal("the owner's password was not checked again after a reload")
	}
}

// TestUserRateAcrossAddresses: guesses for one user from ever new
// addresses are checked at most at the user's rate; the rest are refused
// unchecked.
func TestUserRateAcrossAddresses(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good", "dev": "other"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	guess := 0
	try := func() error {
		guess++
		return login(f, fmt.Sprintf("198.51.%d.%d:1", guess/200, guess%200+1), "ci", fmt.Sprintf("guess-%d", guess))
	}
	refused := 0
	for range 30 {
		if errors.Is(try(), auth.ErrRateLimited) {
			refused++
		}
	}
	if got := f.compares.Load(); got != 4 {
		t.Fatalf("%d guesses checked in a burst, want the burst of 4", got)
	}
	if refused != 26 {
		t.Fatalf("%d refused, want 26", refused)
	}
	err := try()
	if d, ok := auth.RetryAfter(err); !ok || d != 10*time.Second {
		t.Fatalf("Retry-After %v (%v), want 10s", d, err)
	}
	// A minute later, six more.
	f.clock.Advance(time.Minute)
	before := f.compares.Load()
	for range 30 {
		_ = try()
	}
	if got := f.compares.Load() - before; got != 4 {
		t.Fatalf("%d checked a minute later, want 4 (six tokens, capped at the burst)", got)
	}
	// Other users are not affected.
	if err := login(f, "203.0.113.9:1", "dev", "other"); err != nil {
		t.Fatalf("another user: %v", err)
	}
	if got := f.metric(t, "edge_auth_lockouts_total", map[string]string{"scope": "user"}); got != 2 {
		t.Fatalf("user lockouts %v, want 2", got)
	}
}

func TestRateLimitPairBackoffGrows(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good", "dev": "other"})
	f := newFixture(t, auth.Config{Htpasswd: path},
		auth.WithFailureLimit(3, time.Minute), auth.WithBackoff(time.Minute, 4*time.Minute),
		auth.WithAddressFailureLimit(1000), auth.WithUserRate(1000, 1000))
	const guesser = "203.0.113.1:1"
	failRound := func() {
		t.Helper()
		for range 3 {
			if err := login(f, guesser, "ci", "bad"); !errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrRateLimited) {
				t.Fatalf("failure: %v", err)
			}
		}
	}
	lockedFor := func() time.Duration {
		t.Helper()
		before := f.compares.Load()
		d, ok := auth.RetryAfter(login(f, guesser, "ci", "good"))
		if !ok {
			t.Fatal("not locked out")
		}
		if f.compares.Load() != before {
			t.Fatal("a refused login was checked with bcrypt")
		}
		return d
	}
	for _, want := range []time.Duration{time.Minute, 2 * time.Minute, 4 * time.Minute, 4 * time.Minute} {
		failRound()
		if got := lockedFor(); got != want {
			t.Fatalf("lockout %v, want %v", got, want)
		}
		// The same address for another user, and the user elsewhere, go on.
		if err := login(f, guesser, "dev", "other"); err != nil {
			t.Fatalf("another user from the guesser's address: %v", err)
		}
		if err := login(f, "192.0.2.50:1", "ci", "good"); err != nil {
			t.Fatalf("the user from another address: %v", err)
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
		if err := login(f, guesser, "ci", "bad"); !errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrRateLimited) {
			t.Fatalf("spread failure: %v", err)
		}
		f.clock.Advance(31 * time.Second)
	}
	if got := f.metric(t, "edge_auth_lockouts_total", map[string]string{"scope": "pair"}); got != 5 {
		t.Fatalf("pair lockouts %v, want 5", got)
	}
}

func TestRateLimitPerClient(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good", "dev": "other"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	// dev logged in from the /64 before.
	if err := login(f, "[2001:db8:1:2::50]:1", "dev", "other"); err != nil {
		t.Fatal(err)
	}
	// One client tries five user names: the client is locked out, even
	// for a good user; IPv6 addresses in one /64 count together.
	for i, user := range []string{"a", "b", "c", "d", "e"} {
		addr := "[2001:db8:1:2::" + fmt.Sprint(i+1) + "]:443"
		if err := login(f, addr, user, "x"); !errors.Is(err, auth.ErrUnauthenticated) {
			t.Fatalf("failure %d: %v", i, err)
		}
	}
	if err := login(f, "[2001:db8:1:2::99]:1", "ci", "good"); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("same /64 after 5 failures: %v, want ErrRateLimited", err)
	}
	// A user who logged in from there before is not held by it, other
	// clients are not affected, and a good login does not lift the
	// client's lockout.
	if err := login(f, "[2001:db8:1:2::50]:1", "dev", "other"); err != nil {
		t.Fatalf("a trusted user from the locked-out client: %v", err)
	}
	if err := login(f, "[2001:db8:1:3::1]:1", "ci", "good"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	if err := login(f, "[2001:db8:1:2::99]:1", "ci", "good"); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("after a good login elsewhere: %v, want ErrRateLimited", err)
	}
	// Anonymous pulls carry no credentials and are not refused.
	if _, err := f.a.Authorize(request("[2001:db8:1:2::1]:1", "", ""), openRoute, "library/alpine", policy.CapPull); err != nil {
		t.Fatalf("anonymous pull from a locked-out client: %v", err)
	}
	if got := f.metric(t, "edge_auth_lockouts_total", map[string]string{"scope": "client"}); got != 1 {
		t.Fatalf("client lockouts %v, want 1", got)
	}
	if got := f.metric(t, "edge_auth_failures_total", map[string]string{"reason": "unknown_user"}); got != 5 {
		t.Fatalf("unknown_user failures %v, want 5", got)
	}
	f.clock.Advance(time.Minute)
	if err := login(f, "[2001:db8:1:2::99]:1", "ci", "good"); err != nil {
		t.Fatalf("after the back-off: %v", err)
	}
}

// TestRateLimitSuccessKeepsFailures: a good login does not clear the
// failures of its pair, so whoever knows the password cannot launder the
// guesses of someone else at the same address.
func TestRateLimitSuccessKeepsFailures(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good"})
	f := newFixture(t, auth.Config{Htpasswd: path}, limitOpts...)
	steps := []struct {
		pw   string
		want error
	}{
		{"bad", auth.ErrUnauthenticated},
		{"bad", auth.ErrUnauthenticated},
		{"good", nil},
		{"bad", auth.ErrUnauthenticated},
		{"good", auth.ErrRateLimited},
	}
	for i, s := range steps {
		err := login(f, "192.0.2.3:1", "ci", s.pw)
		if s.want == nil && err != nil || s.want != nil && !errors.Is(err, s.want) {
			t.Fatalf("step %d: %v, want %v", i+1, err, s.want)
		}
	}
}

// TestConcurrentGuessesCountUpFront: guesses sent at once are counted
// against the limits before any is checked, so a flood gets no more checks
// than the same guesses in a row.
func TestConcurrentGuessesCountUpFront(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good"})
	f := newFixture(t, auth.Config{Htpasswd: path},
		auth.WithFailureLimit(3, time.Minute), auth.WithAddressFailureLimit(1000), auth.WithUserRate(1000, 1000))
	var compares atomic.Int64
	release := make(chan struct{})
	auth.SetCompare(f.a, func(hash, pw []byte) error {
		compares.Add(1)
		<-release
		return errors.New("wrong")
	})
	const n = 50
	var refused atomic.Int64
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			if errors.Is(login(f, "192.0.2.1:1", "ci", fmt.Sprintf("guess-%d", i)), auth.ErrRateLimited) {
				refused.Add(1)
			}
		})
	}
	// Every guess is either refused or waiting in a check.
	deadline := time.Now().Add(time.Minute)
	for compares.Load()+refused.Load() < n && time.Now().Before(deadline) {
		time.Sleep(time.Millisecond)
	}
	close(release)
	wg.Wait()
	if got := compares.Load(); got != 3 {
		t.Fatalf("%d of %d concurrent guesses checked, want the limit of 3", got, n)
	}
}

// TestLockoutsCannotBeWashedAway: no flood of other names, from the
// guesser's address or from anywhere, makes the tables forget a lockout or
// a spent budget; when a table holds only records that still matter, new
// keys are refused instead.
func TestLockoutsCannotBeWashedAway(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good"})
	f := newFixture(t, auth.Config{Htpasswd: path},
		auth.WithFailureLimit(2, time.Minute), auth.WithAddressFailureLimit(4), auth.WithUserRate(1, 2),
		auth.WithTableSize(8))
	const guesser = "192.0.2.1:1"
	// The pair (guesser, ci) is locked out, then the guesser's address.
	for i := range 2 {
		if err := login(f, guesser, "ci", fmt.Sprint("bad", i)); !errors.Is(err, auth.ErrUnauthenticated) || errors.Is(err, auth.ErrRateLimited) {
			t.Fatalf("guess %d: %v", i, err)
		}
	}
	for i := range 2 {
		_ = login(f, guesser, fmt.Sprint("name", i), "x")
	}
	compares := f.compares.Load()
	// A flood of new names from the guesser's address, far past the size
	// of every table: all refused, none checked.
	for i := range 200 {
		if err := login(f, guesser, fmt.Sprint("flood", i), "x"); !errors.Is(err, auth.ErrRateLimited) {
			t.Fatalf("flood %d: %v", i, err)
		}
	}
	if err := login(f, guesser, "ci", "bad-again"); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("the locked pair after the flood: %v", err)
	}
	if got := f.compares.Load(); got != compares {
		t.Fatalf("%d checks during the flood", got-compares)
	}
	// ci's budget is spent (2 failures, burst 2). Names from many
	// addresses fill the tables; ci's budget stays spent, and once the
	// tables are full of records that matter, new names are refused.
	refused := 0
	for i := range 40 {
		err := login(f, fmt.Sprintf("198.51.100.%d:1", i+1), fmt.Sprint("other", i), "x")
		if errors.Is(err, auth.ErrRateLimited) {
			refused++
		}
	}
	if refused == 0 {
		t.Fatal("full tables took every new name")
	}
	before := f.compares.Load()
	if err := login(f, "203.0.113.1:1", "ci", "bad-elsewhere"); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("ci from a new address after the flood: %v, want its spent budget", err)
	}
	if f.compares.Load() != before {
		t.Fatal("a guess beyond ci's budget was checked")
	}
	// Once the records no longer matter, they make room again.
	f.clock.Advance(time.Hour)
	if err := login(f, "203.0.113.1:1", "ci", "good"); err != nil {
		t.Fatalf("an hour later: %v", err)
	}
}

// TestTrustedNetworksAndProxies: a client network named trusted is held
// only by its own pair's failures; behind a trusted proxy, clients are
// told apart by X-Forwarded-For, which nobody else can forge.
func TestTrustedNetworksAndProxies(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good"})
	f := newFixture(t, auth.Config{Htpasswd: path}, append(limitOpts,
		auth.WithTrustedNetworks(netip.MustParsePrefix("10.1.0.0/16")),
		auth.WithTrustedProxies(netip.MustParsePrefix("192.0.2.0/24")))...)
	// Spend ci's budget from untrusted addresses.
	for i := range 10 {
		_ = login(f, fmt.Sprintf("198.51.100.%d:1", i+1), "ci", fmt.Sprint("guess", i))
	}
	if err := login(f, "203.0.113.7:1", "ci", "good"); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("ci from an untrusted new address: %v, want its spent budget", err)
	}
	// A runner in the trusted network logs in all the same.
	if err := login(f, "10.1.2.3:1", "ci", "good"); err != nil {
		t.Fatalf("ci from a trusted network: %v", err)
	}
	// Through the proxy: the client named last in X-Forwarded-For counts.
	viaProxy := func(xff, pw string) error {
		r := request("192.0.2.10:1", "ci", pw)
		r.Header.Set("X-Forwarded-For", xff)
		_, err := f.a.Login(r, false)
		return err
	}
	if err := viaProxy("203.0.113.50, 10.1.9.9", "good"); err != nil {
		t.Fatalf("a trusted client through the proxy: %v", err)
	}
	if err := viaProxy("10.1.9.9, 203.0.113.50", "good"); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("an untrusted client that writes a trusted address first: %v", err)
	}
	// Hops with ports, as some proxies write them, are read all the same:
	// an unreadable last hop would make the proxy the client.
	if err := viaProxy("10.1.9.9, 203.0.113.51:40000", "good"); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("an untrusted client named with its port: %v", err)
	}
	if err := viaProxy("[2001:db8::1]:443, 10.1.9.9:5000", "good"); err != nil {
		t.Fatalf("a trusted client named with its port: %v", err)
	}
	// From outside the proxies, X-Forwarded-For is not believed.
	r := request("203.0.113.60:1", "ci", "good")
	r.Header.Set("X-Forwarded-For", "10.1.2.3")
	if _, err := f.a.Login(r, false); !errors.Is(err, auth.ErrRateLimited) {
		t.Fatalf("a forged X-Forwarded-For: %v", err)
	}
}

// Other users' logins from ever new addresses do not push the owner's
// address out of the trusted ones: a full table trusts no newcomer rather
// than forget a key still trusted, and guessers elsewhere then still
// cannot lock the owner out.
func TestOtherLoginsDoNotUntrustTheOwner(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "good", "mallory": "m"})
	f := newFixture(t, auth.Config{Htpasswd: path}, append(limitOpts, auth.WithTableSize(8))...)
	const owner = "192.0.2.1:1"
	if err := login(f, owner, "ci", "good"); err != nil {
		t.Fatal(err)
	}
	for i := range 8 {
		f.clock.Advance(time.Minute)
		if err := login(f, fmt.Sprintf("[2001:db8:0:%x::1]:1", i+1), "mallory", "m"); err != nil {
			t.Fatal(err)
		}
	}
	f.clock.Advance(11 * time.Minute) // past the cache of the last check
	for i := range 10 {
		_ = login(f, fmt.Sprintf("198.51.100.%d:1", i+1), "ci", "guess")
	}
	if err := login(f, owner, "ci", "good"); err != nil {
		t.Fatalf("the owner, after other users' logins filled the table and guesses elsewhere: %v", err)
	}
}
