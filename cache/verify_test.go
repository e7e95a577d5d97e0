package cache

import (
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestReferences(t *testing.T) {
	t.Parallel()
	a, b, c, s := digest.FromString("a"), digest.FromString("b"), digest.FromString("c"), digest.FromString("s")
	foreign := digest.FromString("foreign")
	manifest := `{"schemaVersion":2,"config":{"digest":"` + a.String() + `"},"layers":[{"digest":"` + b.String() +
		`"},{"digest":"bogus"},{"digest":"` + foreign.String() + `","urls":["https://example.com/l"]}],` +
		`"subject":{"digest":"` + s.String() + `"},"blobs":[{"digest":"` + s.String() + `"}]}`
	got := References([]byte(manifest))
	if len(got) != 2 || got[0] != b || got[1] != a {
		t.Fatalf("manifest references = %v; the subject, blobs and foreign layers must not be linked", got)
	}
	index := `{"manifests":[{"digest":"` + c.String() + `"}]}`
	if got := References([]byte(index)); len(got) != 1 || got[0] != c {
		t.Fatalf("index references = %v", got)
	}
	if got := References([]byte("not json")); got != nil {
		t.Fatalf("garbage references = %v", got)
	}
}

func TestPage(t *testing.T) {
	t.Parallel()
	tags := []string{"a", "b", "c", "d"}
	tests := []struct {
		n    int
		last string
		want string
	}{
		{0, "", "abcd"}, {2, "", "ab"}, {2, "b", "cd"}, {10, "bb", "cd"}, {1, "d", ""},
	}
	for _, tt := range tests {
		got := ""
		for _, s := range page(tags, tt.n, tt.last) {
			got += s
		}
		if got != tt.want {
			t.Errorf("page(n=%d, last=%q) = %q, want %q", tt.n, tt.last, got, tt.want)
		}
	}
}
