package upstream

import (
	"testing"
	"time"
)

func TestRateLimitValue(t *testing.T) {
	t.Parallel()
	for v, want := range map[string]struct {
		n      int
		window time.Duration
		ok     bool
	}{
		"100;w=21600": {100, 6 * time.Hour, true},
		"76":          {76, 0, true},
		" 5 ; w=60 ":  {5, time.Minute, true},
		"":            {0, 0, false},
		"lots;w=60":   {0, 0, false},
		"-1;w=60":     {0, 0, false},
		"7;w=forever": {7, 0, true},
	} {
		n, w, ok := rateLimitValue(v)
		if n != want.n || w != want.window || ok != want.ok {
			t.Errorf("rateLimitValue(%q) = %d, %v, %v; want %+v", v, n, w, ok, want)
		}
	}
}
