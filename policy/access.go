package policy

import (
	"errors"
	"fmt"
	"strings"
)

// Grant gives a user capabilities on the repositories of a route whose
// names fall under a prefix.
type Grant struct {
	// User is an authenticated user's name, or "*" for any authenticated
	// user.
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
	caps   Capability
}

func (g *grant) permits(user, route, repo string, need Capability) bool {
	return (g.user == "*" || g.user == user) && (g.route == "" || g.route == route) &&
		g.caps.Has(need) && underPrefix(repo, g.prefix)
}

// Access decides who may do what: a route's anonymous pull, then the
// grants.
type Access struct {
	grants []grant
}

// NewAccess checks grants.
func NewAccess(grants []Grant) (*Access, error) {
	a := &Access{}
	for i, g := range grants {
		cg, err := compileGrant(g)
		if err != nil {
			return nil, fmt.Errorf("grant %d: %w", i+1, err)
		}
		a.grants = append(a.grants, cg)
	}
	return a, nil
}

// Users returns the user named by each grant, "*" included, in order.
func (a *Access) Users() []string {
	users := make([]string, len(a.grants))
	for i, g := range a.grants {
		users[i] = g.user
	}
	return users
}

// Decision is the answer of Access.Decide.
type Decision int

const (
	// Allowed: go ahead.
	Allowed Decision = iota
	// NeedsCredentials: an anonymous client may not; a user might.
	NeedsCredentials
	// Denied: this user may not.
	Denied
	// BadName: the repository name is not one of the route's, or cannot be
	// matched against prefixes safely.
	BadName
)

// Decide says whether user ("" for an anonymous client) may do need, one
// capability, on repo of route rt.
func (a *Access) Decide(user string, rt *Route, repo string, need Capability) Decision {
	switch {
	case !need.Single():
		return Denied
	case rt == nil || !validRepo(repo) || !rt.Holds(repo):
		return BadName
	case need == CapPull && rt.AnonymousPull:
		return Allowed
	case user == "":
		return NeedsCredentials
	}
	for i := range a.grants {
		if a.grants[i].permits(user, rt.Name, repo, need) {
			return Allowed
		}
	}
	return Denied
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
	if p := strings.TrimSuffix(g.Prefix, "/"); g.Prefix != "" && !validRepo(p) {
		return cg, fmt.Errorf("prefix %q is not a repository name prefix", g.Prefix)
	}
	if len(g.Actions) == 0 {
		return cg, errors.New("no actions")
	}
	for _, s := range g.Actions {
		c, err := ParseCapability(s)
		if err != nil {
			return cg, err
		}
		cg.caps |= c
	}
	return cg, nil
}
