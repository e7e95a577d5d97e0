package upstream_test

import (
	"context"
	"errors"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/upstream"
)

func forward(c *upstream.Config) { c.ForwardCredentials = true }

func as(ctx context.Context, user, pass string) context.Context {
	return upstream.WithCredentials(ctx, upstream.Credentials{Username: user, Password: pass})
}

// wantStatus checks that err is the origin's answer with status.
func wantStatus(t *testing.T, what string, err error, status int) {
	t.Helper()
	var oe *upstream.Error
	if !errors.As(err, &oe) || oe.Status != status {
		t.Fatalf("%s: %v, want the origin's %d", what, err, status)
	}
}

func TestForwardedCredentialsAreTheClients(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		opts []origintest.Option
	}{
		{"token", []origintest.Option{origintest.WithTokenAuth("owner", "owner-pw"),
			origintest.WithTokenUser("alice", "alice-pw", "private/app"), origintest.WithTokenUser("bob", "bob-pw", "other/app")}},
		{"basic", []origintest.Option{origintest.WithBasicAuth("alice", "alice-pw")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := origintest.NewRegistry(t, tc.opts...)
			origintest.PushImage(t, r.URL, "private/app", "v1", 1, 1024)
			c, _ := newClient(t, r.URL, forward)
			ctx := t.Context()

			if _, err := c.HeadManifest(as(ctx, "alice", "alice-pw"), "private/app", "v1"); err != nil {
				t.Fatalf("alice: %v", err)
			}
			// Each client's own credentials, never the last one's token.
			wantStatus(t, "wrong password", func() error {
				_, err := c.HeadManifest(as(ctx, "alice", "wrong"), "private/app", "v1")
				return err
			}(), http.StatusUnauthorized)
			_, err := c.HeadManifest(ctx, "private/app", "v1")
			wantStatus(t, "no credentials", err, http.StatusUnauthorized)
			if tc.name == "token" {
				_, err := c.HeadManifest(as(ctx, "bob", "bob-pw"), "private/app", "v1")
				wantStatus(t, "bob", err, http.StatusUnauthorized)
			}
			if _, err := c.HeadManifest(as(ctx, "alice", "alice-pw"), "private/app", "v1"); err != nil {
				t.Fatalf("alice again: %v", err)
			}
		})
	}
}

func TestForwardedCredentialsAreIgnoredUnlessTheRouteForwards(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"),
		origintest.WithTokenUser("alice", "alice-pw", "private/app"))
	origintest.PushImage(t, r.URL, "private/app", "v1", 1, 1024)
	c, _ := newClient(t, r.URL)
	_, err := c.HeadManifest(as(t.Context(), "alice", "alice-pw"), "private/app", "v1")
	wantStatus(t, "a client's credentials on a route that does not forward them", err, http.StatusUnauthorized)

	if _, err := upstream.New(upstream.Config{Name: "x", Origin: r.URL, Username: "u", ForwardCredentials: true}); err == nil {
		t.Fatal("a forwarding client with credentials of its own was accepted")
	}
}

func TestCredentialsIDHidesThem(t *testing.T) {
	t.Parallel()
	a := upstream.Credentials{Username: "alice", Password: "pw"}
	if a.ID() != a.ID() || a.ID() == (upstream.Credentials{Username: "alice", Password: "pw2"}).ID() ||
		a.ID() == (upstream.Credentials{Username: "alicep", Password: "w"}).ID() {
		t.Fatal("IDs do not tell credentials apart")
	}
	for _, s := range []string{"alice", "pw"} {
		if len(a.ID()) != 64 || strings.Contains(a.ID(), s) {
			t.Fatalf("ID %q shows %q", a.ID(), s)
		}
	}
}

// A client's token is used a minute at most, whatever its own life: access
// the origin revokes is noticed within a minute.
func TestForwardedTokensLastAMinute(t *testing.T) {
	t.Parallel()
	r := origintest.NewRegistry(t, origintest.WithTokenAuth("owner", "owner-pw"),
		origintest.WithTokenUser("alice", "alice-pw", "private/app"), origintest.WithTokenTTL(time.Hour))
	origintest.PushImage(t, r.URL, "private/app", "v1", 1, 1024)
	clock := testkit.NewClock(time.Now())
	c, _ := newClient(t, r.URL, forward, func(cfg *upstream.Config) { cfg.Clock = testkit.StopClock{Clock: clock} })
	ctx := as(t.Context(), "alice", "alice-pw")
	head := func() {
		t.Helper()
		if _, err := c.HeadManifest(ctx, "private/app", "v1"); err != nil {
			t.Fatal(err)
		}
	}
	head()
	issued := r.TokensIssued()
	clock.Advance(50 * time.Second)
	head()
	if got := r.TokensIssued(); got != issued {
		t.Fatalf("a token of 50s was replaced (%d issued, want %d)", got, issued)
	}
	clock.Advance(15 * time.Second)
	head()
	if got := r.TokensIssued(); got != issued+1 {
		t.Fatalf("a client's token was used past a minute (%d issued, want %d)", got, issued+1)
	}
}

// Fields are length-prefixed in the ID: no user name and password pair
// can be shifted into another's.
func TestCredentialsIDKeepsTheFieldsApart(t *testing.T) {
	t.Parallel()
	a := upstream.Credentials{Username: "a\x00b", Password: "c"}
	b := upstream.Credentials{Username: "a", Password: "b\x00c"}
	if a.ID() == b.ID() {
		t.Fatal("two credentials have one ID")
	}
}
