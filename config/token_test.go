package config

import (
	"strings"
	"testing"
	"time"
)

// TestTokenEnabled checks that the token flow is on only when turned on:
// a node with users and anonymous pull keeps it off (dockerd pulling
// through a mirror would send it Docker Hub credentials, moby #42022).
func TestTokenEnabled(t *testing.T) {
	t.Parallel()
	const routes = "routes: [{name: a, origin: \"https://a.example\", default: true}]\n"
	tests := []struct {
		name, yaml string
		want       bool
	}{
		{"no users", routes, false},
		{"users and anonymous pull", routes + "auth: {htpasswd: /h}\n", false},
		{"one route open", "routes: [{name: a, origin: \"https://a.example\", anonymous_pull: true}]\nauth: {htpasswd: /h, anonymous_pull: false}\n", false},
		{"turned off", routes + "auth: {htpasswd: /h, token: {enabled: false}}\n", false},
		{"turned on", routes + "auth: {anonymous_pull: false, token: {enabled: true}}\n", true},
	}
	for _, tt := range tests {
		if got := mustParse(t, tt.yaml).TokenEnabled(); got != tt.want {
			t.Errorf("%s: TokenEnabled() = %v, want %v", tt.name, got, tt.want)
		}
	}
	c := mustParse(t, routes+"auth: {token: {realm: \"https://r.example/token\", service: svc, ttl: 10m, key_file: /k, hosts: [registry.example]}}\n")
	if tk := c.Auth.Token; tk.Realm != "https://r.example/token" || tk.Service != "svc" || time.Duration(tk.TTL) != 10*time.Minute || tk.KeyFile != "/k" ||
		len(tk.Hosts) != 1 || tk.Hosts[0] != "registry.example" {
		t.Errorf("auth.token read as %+v", tk)
	}
}

func TestTokenRejects(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct{ yaml, want string }{
		{"auth: {token: {ttl: 10s}}\n", "auth.token.ttl"},
		{"auth: {token: {ttl: 48h}}\n", "auth.token.ttl"},
		{"auth: {token: {realm: \"auth.example/token\"}}\n", "auth.token.realm"},
		{"auth: {token: {service: \"a\\tb\"}}\n", "control characters"},
		{"auth: {token: {hosts: [\"registry.example:5000\"]}}\n", "auth.token.hosts"},
		{"auth: {token: {hosts: [\"\"]}}\n", "auth.token.hosts"},
	} {
		if _, err := Parse([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.yaml, err, tt.want)
		}
	}
}

// TestTokenWarnings checks that a token flow whose realm would be derived
// as http:// is warned of, and not one with a realm, TLS or a trusted
// proxy.
func TestTokenWarnings(t *testing.T) {
	t.Parallel()
	const routes = "routes: [{name: a, origin: \"https://a.example\", default: true}]\n"
	tests := []struct {
		name, yaml string
		warn       bool
	}{
		{"off", routes, false},
		{"derived, no TLS", routes + "auth: {token: {enabled: true}}\n", true},
		{"realm set", routes + "auth: {token: {enabled: true, realm: \"https://r.example/token\"}}\n", false},
		{"TLS", routes + "tls: {cert_file: /c, key_file: /k}\nauth: {token: {enabled: true}}\n", false},
		{"trusted proxy", routes + "auth: {trusted_proxies: [10.0.0.0/8], token: {enabled: true}}\n", false},
	}
	for _, tt := range tests {
		w := mustParse(t, tt.yaml).TokenWarnings()
		if (len(w) > 0) != tt.warn {
			t.Errorf("%s: warnings %q, want some: %v", tt.name, w, tt.warn)
		}
	}
}
