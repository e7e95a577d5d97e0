package policy_test

import (
	"strings"
	"testing"

	"github.com/edgeregistry/edge/policy"
)

func TestAccessDecides(t *testing.T) {
	t.Parallel()
	a, err := policy.NewAccess([]policy.Grant{
		{User: "ci", Route: "team", Prefix: "team/", Actions: []string{"pull", "push"}},
		{User: "*", Prefix: "pub", Actions: []string{"pull"}},
		{User: "ops", Actions: []string{"delete"}},
	})
	if err != nil {
		t.Fatal(err)
	}
	team := &policy.Route{Name: "team", Hosted: true, Prefix: "team/"}
	hub := &policy.Route{Name: "docker.io", AnonymousPull: true}
	closed := &policy.Route{Name: "closed"}
	for _, tt := range []struct {
		user  string
		rt    *policy.Route
		repo  string
		need  policy.Capability
		want  policy.Decision
		about string
	}{
		{"ci", team, "team/app", policy.CapPush, policy.Allowed, "a granted push"},
		{"ci", team, "team/app", policy.CapDelete, policy.Denied, "an action not granted"},
		{"ci", team, "other/app", policy.CapPull, policy.BadName, "a name outside the route"},
		{"ci", team, "team/../x", policy.CapPull, policy.BadName, "a dot element"},
		{"", team, "team/app", policy.CapPull, policy.NeedsCredentials, "anonymous, route closed"},
		{"", hub, "library/alpine", policy.CapPull, policy.Allowed, "anonymous pull of an open route"},
		{"", hub, "library/alpine", policy.CapDelete, policy.NeedsCredentials, "anonymous delete"},
		{"bob", closed, "pub/x", policy.CapPull, policy.Allowed, "any user, by prefix"},
		{"bob", closed, "public/x", policy.CapPull, policy.Denied, "prefix by element, not by string"},
		{"ops", closed, "any/thing", policy.CapDelete, policy.Allowed, "a grant on every route"},
		{"ci", team, "team/app", policy.CapPull | policy.CapPush, policy.Denied, "two capabilities at once"},
	} {
		if got := a.Decide(tt.user, tt.rt, tt.repo, tt.need); got != tt.want {
			t.Errorf("%s: Decide(%q, %s, %q, %v) = %d, want %d", tt.about, tt.user, tt.rt.Name, tt.repo, tt.need, got, tt.want)
		}
	}
}

func TestNewAccessRefusesBadGrants(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		g    policy.Grant
		want string
	}{
		{policy.Grant{Actions: []string{"pull"}}, "grant 1: no user"},
		{policy.Grant{User: "u"}, "no actions"},
		{policy.Grant{User: "u", Actions: []string{"write"}}, `unknown action "write"`},
		{policy.Grant{User: "u", Prefix: "/team/", Actions: []string{"pull"}}, "prefix"},
	} {
		if _, err := policy.NewAccess([]policy.Grant{tt.g}); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%+v: %v, want %q", tt.g, err, tt.want)
		}
	}
}
