package config

import (
	"strings"
	"testing"
	"time"
)

func TestGlobalTimeoutsAndReadMemory(t *testing.T) {
	t.Parallel()
	c := mustParse(t, "global: {backend: dir, timeouts: {dial: 1s, metadata: 3s}, read_memory: 32MiB}\n")
	if c.Global.Timeouts.Dial != time.Second || c.Global.Timeouts.Metadata != 3*time.Second || c.Global.ReadMemory != 32<<20 {
		t.Fatalf("global = %+v", c.Global)
	}
	for yaml, want := range map[string]string{
		"global: {backend: dir, timeouts: {dial: -1s}}\n":  "negative",
		"global: {backend: dir, timeouts: {dial: soon}}\n": "soon",
		"global: {backend: dir, read_memory: lots}\n":      "not a size",
	} {
		if _, err := Parse([]byte(yaml)); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: err = %v, want it to mention %q", yaml, err, want)
		}
	}
}
