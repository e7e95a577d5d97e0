package upstream

import (
	"maps"
	"net/http"
	"testing"
	"time"
)

func TestParseChallenge(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in     []string
		scheme string
		params map[string]string
	}{
		{[]string{`Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:library/alpine:pull"`},
			"Bearer", map[string]string{"realm": "https://auth.docker.io/token", "service": "registry.docker.io", "scope": "repository:library/alpine:pull"}},
		{[]string{`Basic realm="Registry Realm"`}, "Basic", map[string]string{"realm": "Registry Realm"}},
		{[]string{`Basic realm="a", Bearer realm="https://x/token", service=x`},
			"Bearer", map[string]string{"realm": "https://x/token", "service": "x"}},
		{[]string{`Basic realm="a"`, `bearer Realm="https://y/t",error="insufficient_scope"`},
			"bearer", map[string]string{"realm": "https://y/t", "error": "insufficient_scope"}},
		{[]string{`Bearer realm="q\"uote"`}, "Bearer", map[string]string{"realm": `q"uote`}},
		{nil, "", nil},
	} {
		scheme, params := parseChallenge(tc.in)
		if scheme != tc.scheme || !maps.Equal(params, tc.params) {
			t.Errorf("parseChallenge(%q) = %q %v, want %q %v", tc.in, scheme, params, tc.scheme, tc.params)
		}
	}
}

func TestNextLast(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		`</v2/app/tags/list?last=b&n=2>; rel="next"`:       "b",
		`</v2/app/tags/list?n=2&last=v1.2%2B3>;rel="next"`: "v1.2+3",
		`</v2/app/tags/list?last=b>; rel="prev"`:           "",
		``:                                                 "",
	} {
		if got := nextLast([]string{in}); got != want {
			t.Errorf("nextLast(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Duration{
		"120":  2 * time.Minute,
		" 3 ":  3 * time.Second,
		"-1":   0,
		"soon": 0,
		now.Add(90 * time.Second).Format(http.TimeFormat): 90 * time.Second,
		now.Add(-time.Hour).Format(http.TimeFormat):       0,
	} {
		if got := parseRetryAfter(in, now); got != want {
			t.Errorf("parseRetryAfter(%q) = %v, want %v", in, got, want)
		}
	}
}

func TestContentRange(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in           string
		start, total int64
		ok           bool
	}{
		{"bytes 100-199/1000", 100, 1000, true},
		{"bytes 0-0/*", 0, -1, true},
		{"bytes */1000", 0, 0, false},
		{"items 1-2/3", 0, 0, false},
		{"", 0, 0, false},
	} {
		start, total, ok := contentRange(tc.in)
		if start != tc.start || total != tc.total || ok != tc.ok {
			t.Errorf("contentRange(%q) = %d %d %v", tc.in, start, total, ok)
		}
	}
}
