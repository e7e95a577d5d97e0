package auth_test

import (
	"testing"

	"github.com/edgeregistry/edge/auth"
)

// Owns tells a node user's credentials from any others, and a mismatch
// counts against nothing: the user still logs in from the same address
// after many.
func TestOwnsCountsNothing(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), testUsers)
	f := newFixture(t, auth.Config{Htpasswd: path})
	if !f.a.Owns("ci", "ci-secret") || !f.a.Owns("ci", "ci-secret") {
		t.Fatal("a node user's credentials are not recognised")
	}
	for _, c := range [][2]string{{"ci", "bad"}, {"who", "ci-secret"}, {"", ""}, {"ci", ""}} {
		if f.a.Owns(c[0], c[1]) {
			t.Fatalf("Owns(%q, %q) = true", c[0], c[1])
		}
	}
	for range 100 {
		f.a.Owns("ci", "bad")
	}
	if _, err := f.a.Login(request("192.0.2.9:1", "ci", "ci-secret"), false); err != nil {
		t.Fatalf("login after mismatches that count nothing: %v", err)
	}
}
