package config

import (
	"strings"
	"testing"
	"time"
)

// TestTokenEnabled checks when the token flow is on: as configured, or,
// unset, when there are users and some route allows anonymous pull.
func TestTokenEnabled(t *testing.T) {
	t.Parallel()
	const routes = "routes: [{name: a, origin: \"https://a.example\", default: true}]\n"
	tests := []struct {
		name, yaml string
		want       bool
	}{
		{"no users", routes, false},
		{"users and anonymous pull", routes + "auth: {htpasswd: /h}\n", true},
		{"users, no anonymous pull", routes + "auth: {htpasswd: /h, anonymous_pull: false}\n", false},
		{"one route open", "routes: [{name: a, origin: \"https://a.example\", anonymous_pull: true}]\nauth: {htpasswd: /h, anonymous_pull: false}\n", true},
		{"turned off", routes + "auth: {htpasswd: /h, token: {enabled: false}}\n", false},
		{"turned on", routes + "auth: {anonymous_pull: false, token: {enabled: true}}\n", true},
	}
	for _, tt := range tests {
		if got := mustParse(t, tt.yaml).TokenEnabled(); got != tt.want {
			t.Errorf("%s: TokenEnabled() = %v, want %v", tt.name, got, tt.want)
		}
	}
	c := mustParse(t, routes+"auth: {token: {realm: \"https://r.example/token\", service: svc, ttl: 10m, key_file: /k}}\n")
	if tk := c.Auth.Token; tk.Realm != "https://r.example/token" || tk.Service != "svc" || time.Duration(tk.TTL) != 10*time.Minute || tk.KeyFile != "/k" {
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
	} {
		if _, err := Parse([]byte(tt.yaml)); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%q: %v, want an error with %q", tt.yaml, err, tt.want)
		}
	}
}
