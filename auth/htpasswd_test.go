package auth_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/policy"
)

func TestReload(t *testing.T) {
	t.Parallel()
	path := writeHtpasswd(t, t.TempDir(), map[string]string{"ci": "old"})
	f := newFixture(t, auth.Config{Htpasswd: path,
		Grants: []policy.Grant{{User: "*", Actions: []string{"pull"}}}}, auth.WithReloadInterval(5*time.Second))
	pull := func(user, pw string) error {
		_, err := f.a.Authorize(request("192.0.2.1:1", user, pw), closedRoute, "team/app", policy.CapPull)
		return err
	}
	if err := pull("ci", "old"); err != nil {
		t.Fatalf("before the change: %v", err)
	}
	if err := auth.SetPasswordCost(path, "ci", "new", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := auth.SetPasswordCost(path, "dev", "dev-pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	touch(t, path, time.Now().Add(time.Hour))

	// Within the interval the file is not looked at.
	f.clock.Advance(4 * time.Second)
	if err := pull("ci", "old"); err != nil {
		t.Fatalf("within the interval: %v", err)
	}
	if err := pull("dev", "dev-pw"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("new user within the interval: %v", err)
	}

	// After it, the new file is in force, and the remembered old password
	// is forgotten.
	f.clock.Advance(time.Second)
	if err := pull("ci", "old"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("old password after the reload: %v", err)
	}
	if err := pull("ci", "new"); err != nil {
		t.Fatalf("new password: %v", err)
	}
	if err := pull("dev", "dev-pw"); err != nil {
		t.Fatalf("new user: %v", err)
	}
	if got := f.metric(t, "edge_auth_users", nil); got != 2 {
		t.Fatalf("users gauge %v, want 2", got)
	}

	// A stat that shows a change but the same content keeps the cache.
	compares := f.compares.Load()
	touch(t, path, time.Now().Add(2*time.Hour))
	f.clock.Advance(5 * time.Second)
	if err := pull("ci", "new"); err != nil || f.compares.Load() != compares {
		t.Fatalf("same content, new time: %v, %d bcrypt comparisons", err, f.compares.Load()-compares)
	}
	if got := f.metric(t, "edge_auth_htpasswd_loads_total", map[string]string{"result": "ok"}); got != 2 {
		t.Fatalf("loads %v, want 2", got)
	}

	// A file that goes away keeps the last users, and says so.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	if err := pull("dev", "dev-pw"); err != nil {
		t.Fatalf("after the file went away: %v", err)
	}
	if !strings.Contains(f.logs.String(), "htpasswd file is gone") {
		t.Fatalf("no log of the missing file:\n%s", f.logs)
	}
	if got := f.metric(t, "edge_auth_htpasswd_loads_total", map[string]string{"result": "error"}); got != 1 {
		t.Fatalf("failed loads %v, want 1", got)
	}

	// It is read again when it comes back.
	if err := auth.SetPasswordCost(path, "ops", "ops-pw", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	f.clock.Advance(5 * time.Second)
	if err := pull("ops", "ops-pw"); err != nil {
		t.Fatalf("after the file came back: %v", err)
	}
	if err := pull("dev", "dev-pw"); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("user gone from the new file: %v", err)
	}
}

func TestHtpasswdIgnoresOtherHashes(t *testing.T) {
	t.Parallel()
	good, err := auth.HashPasswordCost("bcrypt-pw", bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	lines := []string{
		"# a comment",
		"",
		"ok:" + good,
		"apr:$apr1$salt$Vj8f6z8cQ8s1pZ8b2m1aQ/",
		"sha:{SHA}W6ph5Mm5Pz8GgiULbPgzG37mj9g=",
		"crypt:$6$salt$abcdefghijklmnop",
		"plain:plain-text-secret",
		"broken:$2y$10$tooshort",
		"a line that is a pasted password",
		"ok:" + good,
	}
	path := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(path, []byte(strings.Join(lines, "\r\n")), 0o600); err != nil {
		t.Fatal(err)
	}
	f := newFixture(t, auth.Config{Htpasswd: path,
		Grants: []policy.Grant{{User: "*", Actions: []string{"pull"}}}})
	if _, err := f.a.Authorize(request("192.0.2.1:1", "ok", "bcrypt-pw"), closedRoute, "a/b", policy.CapPull); err != nil {
		t.Fatalf("bcrypt user: %v", err)
	}
	if _, err := f.a.Authorize(request("192.0.2.1:1", "plain", "plain-text-secret"), closedRoute, "a/b", policy.CapPull); !errors.Is(err, auth.ErrUnauthenticated) {
		t.Fatalf("plain-text user: %v", err)
	}
	logs := f.logs.String()
	for _, want := range []string{`"user":"apr"`, "MD5 (apr1)", "SHA-1", "crypt(3)", "plain-text entry", "malformed bcrypt", "not a user:hash line", "duplicate user", `"users":1`} {
		if !strings.Contains(logs, want) {
			t.Errorf("load log lacks %q", want)
		}
	}
	for _, secret := range []string{"plain-text-secret", "pasted password", "$apr1$", "{SHA}", good} {
		if strings.Contains(logs, secret) {
			t.Errorf("load log shows %q", secret)
		}
	}
	if t.Failed() {
		t.Log(logs)
	}
}

func TestHashPassword(t *testing.T) {
	t.Parallel()
	h, err := auth.HashPassword("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	if c, err := bcrypt.Cost([]byte(h)); err != nil || c != bcrypt.DefaultCost {
		t.Fatalf("cost %d, %v", c, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("s3cret")) != nil {
		t.Fatal("hash does not verify")
	}
	if _, err := auth.HashPassword(strings.Repeat("x", 73)); err == nil {
		t.Fatal("a password bcrypt would cut short was hashed")
	}
	line, err := auth.HtpasswdLine("ci", h)
	if err != nil || line != "ci:"+h+"\n" {
		t.Fatalf("line %q, %v", line, err)
	}
	for _, tt := range []struct{ user, hash string }{
		{"", h}, {"a:b", h}, {"a b", h}, {"a\nb", h}, {"ci", "plain"}, {"ci", "$apr1$x$y"},
	} {
		if _, err := auth.HtpasswdLine(tt.user, tt.hash); err == nil {
			t.Errorf("HtpasswdLine(%q, %q) accepted", tt.user, tt.hash)
		}
	}
}

func TestSetPassword(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := filepath.Join(dir, "htpasswd")
	// A new file is readable by its owner only.
	if err := auth.SetPassword(path, "ci", "first"); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("new file: %v, %v", fi.Mode(), err)
	}
	// An existing file keeps its mode, comments and other users.
	old, _ := os.ReadFile(path)
	other, _ := auth.HashPasswordCost("x", bcrypt.MinCost)
	content := "# users\n" + string(old) + "dev:" + other // no final newline
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, 0o640); err != nil {
		t.Fatal(err)
	}
	if err := auth.SetPasswordCost(path, "ci", "second", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	if err := auth.SetPasswordCost(path, "ops", "third", bcrypt.MinCost); err != nil {
		t.Fatal(err)
	}
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSuffix(string(raw), "\n"), "\n")
	if len(lines) != 4 || lines[0] != "# users" || !strings.HasPrefix(lines[1], "ci:") ||
		lines[2] != "dev:"+other || !strings.HasPrefix(lines[3], "ops:") {
		t.Fatalf("file:\n%s", raw)
	}
	if fi, _ := os.Stat(path); fi.Mode().Perm() != 0o640 {
		t.Fatalf("mode %v, want 0640", fi.Mode().Perm())
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Fatalf("temporary files left: %v", entries)
	}
	a, err := auth.New(auth.Config{Htpasswd: path, Grants: []policy.Grant{{User: "*", Actions: []string{"pull"}}}})
	if err != nil {
		t.Fatal(err)
	}
	for user, pw := range map[string]string{"ci": "second", "dev": "x", "ops": "third"} {
		if _, err := a.Authorize(request("192.0.2.1:1", user, pw), closedRoute, "a", policy.CapPull); err != nil {
			t.Errorf("%s: %v", user, err)
		}
	}
	if err := auth.SetPassword(path, "bad:name", "pw"); err == nil {
		t.Error("SetPassword accepted a name with a colon")
	}
}
