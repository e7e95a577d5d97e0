package registry

import (
	"math/rand/v2"
	"regexp"
	"strings"
	"testing"
)

// The distribution spec's grammar, which validName and validTag implement
// without a regular expression on the hot path.
var (
	specName = regexp.MustCompile(`^[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:\.|_|__|-+)[a-z0-9]+)*)*$`)
	specTag  = regexp.MustCompile(`^[a-zA-Z0-9_][a-zA-Z0-9._-]{0,127}$`)
)

func TestNamesMatchTheSpecGrammar(t *testing.T) {
	t.Parallel()
	fixed := []string{"a", "library/alpine", "a.b", "a_b", "a__b", "a___b", "a--b", "a-", "-a", "a..b", "a._b",
		"a/b/c", "a//b", "/a", "a/", "ghcr.io/org/app", "A", "a b", "a:b", "1/2", "a__", "a.-b"}
	r := rand.New(rand.NewPCG(1, 2))
	const alphabet = "ab0._-/A:"
	for range 20000 {
		b := make([]byte, 1+r.IntN(8))
		for i := range b {
			b[i] = alphabet[r.IntN(len(alphabet))]
		}
		fixed = append(fixed, string(b))
	}
	for _, s := range fixed {
		if got, want := validName(s), specName.MatchString(s); got != want {
			t.Fatalf("validName(%q) = %v, the grammar says %v", s, got, want)
		}
		if got, want := validTag(s), specTag.MatchString(s); got != want {
			t.Fatalf("validTag(%q) = %v, the grammar says %v", s, got, want)
		}
	}
	if validName(strings.Repeat("a", 256)) || !validName(strings.Repeat("a", 255)) {
		t.Fatal("the 255-character limit is wrong")
	}
	if validTag(strings.Repeat("t", 129)) || !validTag(strings.Repeat("t", 128)) {
		t.Fatal("the 128-character tag limit is wrong")
	}
}

func TestParsePath(t *testing.T) {
	t.Parallel()
	tests := []struct{ path, op, name, ref string }{
		{"/v2/", "base", "", ""},
		{"/v2/library/app/manifests/v1", "manifest", "library/app", "v1"},
		{"/v2/a/manifests/b/blobs/sha256:x", "blob", "a/manifests/b", "sha256:x"},
		{"/v2/a/blobs/b/manifests/latest", "manifest", "a/blobs/b", "latest"},
		{"/v2/a/blobs/uploads/", "upload", "a", ""},
		{"/v2/a/blobs/uploads/123", "upload", "a", "123"},
		{"/v2/a/tags/list", "tags", "a", ""},
		{"/v2/a/referrers/sha256:x", "referrers", "a", "sha256:x"},
	}
	for _, tt := range tests {
		op, name, ref, err := parsePath(tt.path)
		if err != nil || op != tt.op || name != tt.name || ref != tt.ref {
			t.Errorf("parsePath(%q) = %q %q %q %v; want %q %q %q", tt.path, op, name, ref, err, tt.op, tt.name, tt.ref)
		}
	}
	for _, bad := range []string{"/v2/a/manifests/", "/v2/a/nothing", "/v3/x", "/v2/A/manifests/x"} {
		if _, _, _, err := parsePath(bad); err == nil {
			t.Errorf("parsePath(%q) accepted", bad)
		}
	}
}

func TestNsParam(t *testing.T) {
	t.Parallel()
	for raw, want := range map[string]string{"": "", "ns=docker.io": "docker.io", "n=1&ns=ghcr.io": "ghcr.io", "nsx=a": "", "ns=a%2Eb": "a.b"} {
		if got := nsParam(raw); got != want {
			t.Errorf("nsParam(%q) = %q, want %q", raw, got, want)
		}
	}
}

// FuzzSplitCommonOp holds the shortcut for manifest and blob paths to the
// general split.
func FuzzSplitCommonOp(f *testing.F) {
	for _, s := range []string{"a/manifests/v1", "a/b/blobs/sha256:00", "a/blobs/manifests/x", "a/manifests/blobs/x",
		"a/blobs/uploads/blobs/x", "x/blobs/uploads", "a/blobs/uploads/", "/manifests/x", "a/tags/list", "manifests/x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, rest string) {
		op, name, ref, ok := splitCommonOp(rest)
		if !ok {
			return
		}
		wop, wname, wref, wok := splitOp(rest)
		if !wok || op != wop || name != wname || ref != wref {
			t.Fatalf("%q: shortcut %q %q %q, general %q %q %q %v", rest, op, name, ref, wop, wname, wref, wok)
		}
	})
}
