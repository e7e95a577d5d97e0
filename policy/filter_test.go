package policy

import "testing"

func TestPermits(t *testing.T) {
	t.Parallel()
	rt := &Route{Name: "hub", Origin: "https://hub", Allow: []string{"library/*", "team/app:v*"}, Deny: []string{"library/secret", "*/*:latest"}}
	if _, err := NewRouter([]Route{*rt}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		repo, tag string
		want      bool
	}{
		{"library/alpine", "", true},
		{"library/alpine", "3.20", true},
		{"library/alpine", "latest", false}, // denied by tag
		{"library/secret", "", false},       // denied by repository
		{"library/secret", "v1", false},
		{"library/a/b", "", true},         // under library/a, which library/* covers
		{"library/secret/sub", "", false}, // under a denied repository
		{"library", "", false},            // library/* covers only what is under library
		{"team/app", "v2", true},          // allowed by tag
		{"team/app", "nightly", false},
		{"team/app", "", true}, // its blobs: the repository part allows them
		{"other/app", "", false},
	} {
		if got := rt.Permits(tc.repo, tc.tag); got != tc.want {
			t.Errorf("Permits(%q, %q) = %v, want %v", tc.repo, tc.tag, got, tc.want)
		}
	}
	open := &Route{Name: "open", Origin: "https://o"}
	if !open.Permits("anything/at/all", "latest") {
		t.Error("a route without lists refused a name")
	}
	// Malformed, and patterns that could never match: upper case, or the
	// route's own name before the repository.
	for _, bad := range [][]string{{"["}, {":v1"}, {"library/*:["}, {"x:"}, {"a:b:c"}, {"Library/App"}, {"r.io/library/*"}} {
		if _, err := NewRouter([]Route{{Name: "r.io", Origin: "https://o", Deny: bad}}); err == nil {
			t.Errorf("deny %q was taken", bad)
		}
	}
	if _, err := NewRouter([]Route{{Name: "r.io", Origin: "https://o", Deny: []string{"*/*:Latest", "r.iox/x"}}}); err != nil {
		t.Errorf("an upper-case tag glob or a name merely starting like the route's: %v", err)
	}
	// A route named by a word, not a host: its name may well be a
	// namespace at the origin (bitnami on Docker Hub).
	if _, err := NewRouter([]Route{{Name: "bitnami", Origin: "https://o", Allow: []string{"bitnami/*"}}}); err != nil {
		t.Errorf("allow bitnami/* on route bitnami: %v", err)
	}
}
