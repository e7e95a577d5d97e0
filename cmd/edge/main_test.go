package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestRunCommands(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	if err := run([]string{"config", "check"}, &out, &errOut); err != nil || !strings.Contains(out.String(), "registry-1.docker.io") {
		t.Fatalf("config check: %v %s", err, out.String())
	}
	if err := run([]string{"bogus"}, &out, &errOut); err == nil {
		t.Fatal("an unknown command was accepted")
	}
	if err := run([]string{"serve", "--config", "/nonexistent.yaml"}, &out, &errOut); err == nil {
		t.Fatal("a missing config file was accepted")
	}
}
