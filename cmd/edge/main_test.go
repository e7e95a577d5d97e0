package main

import (
	"bytes"
	"os"
	"path/filepath"
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

// Asking for help or the version is success; config check refuses what
// serve would, naming the file.
func TestHelpVersionAndConfigCheck(t *testing.T) {
	t.Parallel()
	var out, errOut bytes.Buffer
	for _, args := range [][]string{{"serve", "--help"}, {"config", "check", "-h"}, {"--help"}} {
		out.Reset()
		if err := run(args, &out, &errOut); err != nil || out.Len() == 0 {
			t.Errorf("%v: %v, %q; want the usage and success", args, err, out.String())
		}
	}
	for _, args := range [][]string{{"version"}, {"--version"}} {
		out.Reset()
		if err := run(args, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "edge ") {
			t.Errorf("%v: %v, %q", args, err, out.String())
		}
	}
	dir := t.TempDir()
	for name, section := range map[string]string{
		"tls":      "tls: {cert_file: " + dir + "/missing.crt, key_file: " + dir + "/missing.key}\n",
		"htpasswd": "auth: {htpasswd: " + dir + "/missing.htpasswd}\n",
	} {
		path := filepath.Join(dir, name+".yaml")
		if err := os.WriteFile(path, []byte("data_dir: "+dir+"\n"+section), 0o600); err != nil {
			t.Fatal(err)
		}
		err := run([]string{"config", "check", "--config", path}, &out, &errOut)
		if err == nil || !strings.Contains(err.Error(), "missing") {
			t.Errorf("config check with a %s file that is not there: %v", name, err)
		}
	}
}

// TestConfigCheckTokenWarning checks that config check warns of a token
// flow whose realm would be an http:// URL, and passes.
func TestConfigCheckTokenWarning(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for _, tt := range []struct {
		section string
		warn    bool
	}{
		{"auth: {token: {enabled: true}}\n", true},
		{"auth: {token: {enabled: true, realm: \"https://registry.example/token\"}}\n", false},
	} {
		path := filepath.Join(dir, "edge.yaml")
		if err := os.WriteFile(path, []byte("data_dir: "+dir+"\n"+tt.section), 0o600); err != nil {
			t.Fatal(err)
		}
		var out, errOut bytes.Buffer
		if err := run([]string{"config", "check", "--config", path}, &out, &errOut); err != nil {
			t.Fatalf("config check of %q: %v", tt.section, err)
		}
		if got := strings.Contains(errOut.String(), "warning: auth.token"); got != tt.warn {
			t.Errorf("config check of %q: stderr %q, want a warning: %v", tt.section, errOut.String(), tt.warn)
		}
	}
}
