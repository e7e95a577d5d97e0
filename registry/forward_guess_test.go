package registry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/policy"
)

// Guesses sent at once are counted as if sent one after the other: the
// origin is asked about one client's credentials one at a time, so it sees
// the ten wrong passwords the throttle allows, however many come at once.
func TestForwardedConcurrentGuessesAreThrottled(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	manifest := p.url("private/app/manifests/v1")
	const n = 40
	var wg sync.WaitGroup
	start := make(chan struct{})
	codes := make([]int, n)
	for i := range n {
		wg.Go(func() {
			<-start
			codes[i] = do(t, http.MethodGet, manifest, basicAuth("alice", "guess-"+strconv.Itoa(i))...).Status
		})
	}
	close(start)
	wg.Wait()
	if got := p.origin.TokenDenials(); got > 10 {
		t.Fatalf("the origin was asked about %d wrong passwords sent at once; the throttle allows 10", got)
	}
	throttled := 0
	for _, c := range codes {
		if c == http.StatusTooManyRequests {
			throttled++
		}
	}
	if throttled < n-10 {
		t.Fatalf("%d of %d guesses throttled (%v)", throttled, n, codes)
	}
}

// A tag list is the origin's answer under the client's credentials: its
// refusals count as an admission's do, and past them the origin is not
// asked.
func TestForwardedTagListGuessesAreThrottled(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	tags := p.url("private/app/tags/list")
	p.pullAll(t, p.requests(t)[:1]) // alice, admitted for a minute
	for i := range 10 {
		wantRefused(t, "guesser", do(t, http.MethodGet, tags, basicAuth("alice", "guess-"+strconv.Itoa(i))...), http.MethodGet, "tags")
	}
	denied := p.origin.TokenDenials()
	r := do(t, http.MethodGet, tags, basicAuth("alice", "guess-10")...)
	wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if got := p.origin.TokenDenials(); got != denied {
		t.Fatalf("a throttled tag list reached the origin (%d refusals, was %d)", got, denied)
	}
	// alice's own list still comes, from the origin: her admission is
	// kept.
	if r := do(t, http.MethodGet, tags, alice...); r.Status != http.StatusOK || !strings.Contains(string(r.Body), `"v1"`) {
		t.Fatalf("alice's tag list: %d %s", r.Status, r.Body)
	}
}

// Refusals are counted per address and user name: a guesser slows itself,
// not a client with other credentials behind the same address (NAT, CI
// runners); one that changes user names meets the address's higher
// ceiling, which credentials the origin admitted lately do not.
func TestForwardedGuesserDoesNotLockOutItsNeighbours(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	manifest := p.url("private/app/manifests/v1")
	other := p.url("other/app/manifests/v1")
	for i := range 11 {
		do(t, http.MethodGet, manifest, basicAuth("mallory", "guess-"+strconv.Itoa(i))...)
	}
	wantError(t, do(t, http.MethodGet, manifest, basicAuth("mallory", "guess-11")...), http.StatusTooManyRequests, "TOOMANYREQUESTS")
	// alice, right password, same address, not admitted before.
	if r := do(t, http.MethodGet, manifest, append(alice, "Accept", allManifestTypes)...); r.Status != http.StatusOK {
		t.Fatalf("alice, behind the guesser's address: %d %s", r.Status, r.Body)
	}
	// bob is refused private/app (alice's): a refusal, not throttled.
	wantRefused(t, "bob", do(t, http.MethodGet, manifest, bob...), http.MethodGet, "manifest")

	// Another user name for every guess: the address's ceiling.
	throttled := false
	for i := range 60 {
		r := do(t, http.MethodGet, manifest, basicAuth("user"+strconv.Itoa(i), "guess")...)
		if r.Status == http.StatusTooManyRequests {
			throttled = true
			break
		}
	}
	if !throttled {
		t.Fatalf("60 user names guessed from one address, none throttled; the origin refused %d", p.origin.TokenDenials())
	}
	// bob, whom the origin admitted nowhere yet, meets the address's
	// ceiling; alice, admitted lately, does not, in another repository
	// either (the origin's 403 to good credentials is no guess).
	wantError(t, do(t, http.MethodGet, other, bob...), http.StatusTooManyRequests, "TOOMANYREQUESTS")
	if r := do(t, http.MethodGet, p.url("private/app/tags/list"), alice...); r.Status != http.StatusOK {
		t.Fatalf("alice, admitted lately, behind a guessing address: %d %s", r.Status, r.Body)
	}
}

// An origin whose /v2/ is open and whose content a redirect serves from
// another host: a 401 from that host names nothing about the origin's
// auth, and no client's credentials go to the realm it names.
func TestForwardedCredentialsDoNotFollowARedirectsChallenge(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var stolen []string
	evil := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); ok {
			mu.Lock()
			stolen = append(stolen, u+":"+p)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusUnauthorized)
	}))
	cdn := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// By name: go-containerregistry refuses a loopback address.
		w.Header().Set("WWW-Authenticate", `Bearer realm="http://localhost:`+portOf(evil)+`/token",service="x"`)
		w.WriteHeader(http.StatusUnauthorized)
	}))
	origin := httptestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			return // open; repositories by their own rules
		}
		http.Redirect(w, r, cdn+"/x", http.StatusTemporaryRedirect)
	}))
	n := newNode(t, nodeConfig{extra: []policy.Route{{Name: "fwd.example", Origin: origin, ForwardCredentials: true}}})
	d := "sha256:" + strings.Repeat("a", 64)
	do(t, http.MethodHead, n.URL+"/v2/fwd.example/app/blobs/"+d, basicAuth("alice", "alice-secret")...)
	do(t, http.MethodGet, n.URL+"/v2/fwd.example/other/manifests/v1", basicAuth("bob", "bob-secret")...)
	mu.Lock()
	defer mu.Unlock()
	if len(stolen) > 0 {
		t.Fatalf("clients' credentials went to a realm that a redirect target named: %v", stolen)
	}
}

func httptestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	s := httptest.NewServer(h)
	t.Cleanup(s.Close)
	return s.URL
}

func portOf(u string) string { return u[strings.LastIndex(u, ":")+1:] }

// What the private route cached is not served by digest on the default
// route nor on the hosted route, though the local tier that holds it is
// shared.
func TestForwardedDigestsStayOffOtherRoutes(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{global: newDirGlobal(t), region: "eu-west"})
	reqs := p.requests(t)
	p.pullAll(t, reqs)
	for _, q := range reqs {
		if !strings.Contains(q.path, "sha256:") {
			continue
		}
		for _, path := range []string{
			strings.Replace(q.path, "private/app/", "library/app/", 1),
			strings.Replace(q.path, "private/app/", "team/app/", 1),
		} {
			for _, hdr := range [][]string{anonymous, alice} {
				if r := do(t, q.method, p.n.URL+"/v2/"+path, append(hdr, "Accept", allManifestTypes)...); r.Status == http.StatusOK {
					t.Fatalf("%s %s served on another route", q.method, path)
				}
			}
		}
	}
}

// An admission is kept no longer than the pull token it was given with: a
// token the origin lets live 40s is used 36s, and the admission made with
// it is asked again then, not a minute after it was made (so that access
// revoked at the origin ends here within a minute of the token that last
// showed it).
func TestForwardedAdmissionEndsWithItsToken(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"),
		origintest.WithTokenUser("alice", "alice-pw", "private/app"), origintest.WithTokenTTL(40*time.Second))
	origintest.PushImage(t, origin.URL, "private/app", "v1", 1, 4<<10)
	proxy := origintest.NewProxy(t, origin.URL)
	n := newNode(t, nodeConfig{extra: []policy.Route{{Name: privateRoute, Origin: proxy.URL, ForwardCredentials: true}}})
	manifest := n.URL + "/v2/" + privateRoute + "/private/app/manifests/v1"
	heads := func() int { return proxy.CountPath(http.MethodHead, "/v2/private/app/manifests/v1") }
	get := func() {
		t.Helper()
		if r := do(t, http.MethodGet, manifest, append(alice, "Accept", allManifestTypes)...); r.Status != http.StatusOK {
			t.Fatalf("alice: %d %s", r.Status, r.Body)
		}
	}
	get()
	asked := heads()
	n.clock.Advance(30 * time.Second)
	get()
	if got := heads(); got != asked {
		t.Fatalf("the admission was asked again within its token's life (%d HEADs, want %d)", got, asked)
	}
	n.clock.Advance(7 * time.Second)
	get()
	if got := heads(); got != asked+1 {
		t.Fatalf("the admission outlived its token (%d HEADs, want %d)", got, asked+1)
	}
}

// A guess whose client leaves before the origin answers still counts: the
// origin was asked, and its refusal is charged to the credentials, so
// guesses cut short cannot spray passwords at the origin unbounded.
func TestForwardedGuessesCountWhenTheClientLeaves(t *testing.T) {
	t.Parallel()
	p := newPrivate(t, nodeConfig{})
	manifest := p.url("private/app/manifests/v1")
	p.proxy.Latency(origintest.AnyRequest, 300*time.Millisecond) // every answer comes after the client left
	for i := range 10 {
		ctx, cancel := context.WithTimeout(t.Context(), 50*time.Millisecond)
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, manifest, nil)
		if err != nil {
			t.Fatal(err)
		}
		req.SetBasicAuth("alice", "guess-"+strconv.Itoa(i))
		// Over 4 KiB of headers: served by net/http, which sees the client
		// leave at once (the lean loop notices within a second).
		req.Header.Set("X-Pad", strings.Repeat("p", 5<<10))
		if res, err := http.DefaultClient.Do(req); err == nil {
			res.Body.Close()
			t.Fatalf("guess %d was answered (%d) before the origin could", i, res.StatusCode)
		}
		cancel()
		// The next guess comes once the origin refused this one.
		testkit.Eventually(t, "the origin to refuse the guess", func() bool { return p.origin.TokenDenials() == i+1 })
	}
	p.proxy.ClearFaults()
	r := do(t, http.MethodGet, manifest, basicAuth("alice", "guess-last")...)
	wantError(t, r, http.StatusTooManyRequests, "TOOMANYREQUESTS")
}
