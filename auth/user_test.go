package auth_test

import (
	"testing"

	"github.com/edgeregistry/edge/auth"
)

// HasUser tells a node user's name from others whatever the password, and
// asking counts against nothing: the user still logs in from the same
// address after many.
func TestHasUser(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), testUsers)
	f := newFixture(t, auth.Config{Htpasswd: path})
	if !f.a.HasUser("ci") {
		t.Fatal("a node user's name is not recognised")
	}
	for _, name := range []string{"who", "", "CI", "ci "} {
		if f.a.HasUser(name) {
			t.Fatalf("HasUser(%q) = true", name)
		}
	}
	for range 100 {
		f.a.HasUser("ci")
	}
	if _, err := f.a.Login(request("192.0.2.9:1", "ci", "ci-secret"), false); err != nil {
		t.Fatalf("login after questions that count nothing: %v", err)
	}
}
