package auth

import (
	"errors"
	"fmt"
	"strings"

	"github.com/edgeregistry/edge/policy"
)

// Identity is who made a request.
type Identity struct {
	// User is the authenticated user name; "" is an anonymous client.
	User string
}

// Anonymous reports whether the request carried no credentials.
func (id Identity) Anonymous() bool { return id.User == "" }

// Grant gives a user actions on the repositories of a route whose names
// fall under a prefix.
type Grant struct {
	// User is a user of the htpasswd file, or "*" for any authenticated user.
	User string
	// Route names the route the grant applies to; "" is every route.
	Route string
	// Prefix selects repositories by name, element by element: "team/"
	// matches team/app but neither team nor teamx/app; "team" (no slash)
	// matches team and team/app, not teamx/app; "team/app" matches team/app
	// and team/app/x, not team/apple. "" matches every repository.
	Prefix string
	// Actions are "pull", "push" and "delete".
	Actions []string
}

// grant is a checked Grant.
type grant struct {
	user   string
	route  string
	prefix string
	caps   policy.Capability
}

func (g *grant) permits(user, route, repo string, need policy.Capability) bool {
	return (g.user == "*" || g.user == user) && (g.route == "" || g.route == route) &&
		g.caps.Has(need) && underPrefix(repo, g.prefix)
}

// underPrefix reports whether repo falls under prefix: below it when the
// prefix ends with a slash, else the prefix itself or below it.
func underPrefix(repo, prefix string) bool {
	if prefix == "" {
		return true
	}
	rest, ok := strings.CutPrefix(repo, prefix)
	if !ok {
		return false
	}
	if strings.HasSuffix(prefix, "/") {
		return rest != ""
	}
	return rest == "" || rest[0] == '/'
}

// validRepo rejects names that could play tricks with prefixes: empty
// elements, dot elements, a leading slash. The HTTP layer checks the full
// grammar of names.
func validRepo(repo string) bool {
	if repo == "" {
		return false
	}
	for e := range strings.SplitSeq(repo, "/") {
		if e == "" || e == "." || e == ".." {
			return false
		}
	}
	return true
}

// compileGrant checks a configured grant.
func compileGrant(g Grant) (grant, error) {
	cg := grant{user: g.User, route: g.Route, prefix: g.Prefix}
	if g.User == "" {
		return cg, errors.New("no user (use \"*\" for any authenticated user)")
	}
	if g.User != "*" && !validUser(g.User) {
		return cg, fmt.Errorf("user %q cannot be an htpasswd user", g.User)
	}
	if p := strings.TrimSuffix(g.Prefix, "/"); g.Prefix != "" && !validRepo(p) {
		return cg, fmt.Errorf("prefix %q is not a repository name prefix", g.Prefix)
	}
	if len(g.Actions) == 0 {
		return cg, errors.New("no actions")
	}
	for _, s := range g.Actions {
		c, err := policy.ParseCapability(s)
		if err != nil {
			return cg, err
		}
		cg.caps |= c
	}
	return cg, nil
}
