package policy

import (
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// Capability is what a route allows clients to do, as a bit set.
type Capability uint8

const (
	// CapPull allows manifests, blobs and tag lists to be read.
	CapPull Capability = 1 << iota
	// CapPush allows uploads and manifest writes (hosted routes only).
	CapPush
	// CapDelete allows manifests, tags and blobs to be deleted.
	CapDelete
)

// Has reports whether every capability in want is in c.
func (c Capability) Has(want Capability) bool { return c&want == want }

// Single reports whether c is exactly one capability: what one request
// needs.
func (c Capability) Single() bool { return c == CapPull || c == CapPush || c == CapDelete }

// capNames are the names of the capabilities, as grants and metrics write
// them.
var capNames = []struct {
	c    Capability
	name string
}{{CapPull, "pull"}, {CapPush, "push"}, {CapDelete, "delete"}}

func (c Capability) String() string {
	var names []string
	for _, n := range capNames {
		if c.Has(n.c) {
			names = append(names, n.name)
		}
	}
	if c&^(CapPull|CapPush|CapDelete) != 0 || len(names) == 0 {
		return fmt.Sprintf("capability(%d)", uint8(c))
	}
	return strings.Join(names, "+")
}

// ParseCapability reads the name of one capability: pull, push or delete.
func ParseCapability(s string) (Capability, error) {
	for _, n := range capNames {
		if s == n.name {
			return n.c, nil
		}
	}
	return 0, fmt.Errorf("policy: unknown action %q (want pull, push or delete)", s)
}

// DefaultTagTTL is how long a tag record is fresh when a route sets none.
const DefaultTagTTL = 5 * time.Minute

// DefaultHostedTagTTL is how long a node trusts its own copy of a hosted
// repository's tag before it reads the global tier again, so that a push
// through another region shows up within it.
const DefaultHostedTagTTL = time.Second

// Route is one namespace the node serves: an origin registry it pulls
// through, or a hosted namespace whose system of record is the global tier.
type Route struct {
	// Name matches containerd's ?ns=<host> and a first path element
	// (/v2/<name>/org/app/...). For an origin it is usually the registry host.
	Name string
	// Origin is the base URL of the origin registry; empty for hosted routes.
	Origin string
	// Default makes bare names (Docker's registry-mirrors) come here.
	Default bool
	// Hosted routes accept pushes for names under Prefix.
	Hosted bool
	Prefix string
	// ShortNamePrefix is prepended to single-element names on the default
	// route ("alpine" becomes "library/alpine" for Docker Hub).
	ShortNamePrefix string
	// TagTTL is how long a tag record is fresh before it is revalidated.
	TagTTL time.Duration
	// Caps is what the route allows.
	Caps Capability
	// AnonymousPull lets clients without credentials pull from the route.
	// The zero value asks every puller to authenticate.
	AnonymousPull bool
	// Allow and Deny choose what the route serves (see Permits).
	Allow, Deny []string
	// KeepDeleted serves a tag that the origin no longer has (it answers
	// 404 on revalidation) from what the node holds, marked stale, instead
	// of answering 404: an image deleted upstream keeps running here.
	KeepDeleted bool
	// ForwardCredentials makes a pull-through route send each client's own
	// Basic credentials to its origin, and serve a client only what the
	// origin lets those credentials read: the origin, not the node's users
	// and grants, decides who pulls, and anonymous clients are refused.
	ForwardCredentials bool
	// Prewarm, when its budget is set, fetches what a tag moved to ahead
	// of the clients when another region of the fleet finds it moved.
	Prewarm Prewarm
}

// Prewarm is a route's rollout prewarm; the zero value is off.
type Prewarm struct {
	Budget int64         // blob bytes fetched for one moved tag, at most
	Window time.Duration // how lately the node must have served the tag
}

// Holds reports whether repo falls inside the route's namespace: under the
// prefix of a hosted route that has one, anything otherwise.
func (r *Route) Holds(repo string) bool {
	return !r.Hosted || strings.HasPrefix(repo, r.Prefix)
}

// Fresh reports whether a tag record fetched at fetched is still fresh at now.
func (r *Route) Fresh(fetched, now time.Time) bool {
	ttl := r.TagTTL
	if ttl <= 0 {
		ttl = DefaultTagTTL
	}
	return now.Sub(fetched) < ttl
}

// RetryDelay is how long a failed revalidation of a stale tag is not retried,
// so that an origin that is down is not asked again on every pull. The
// origin's Retry-After wins when it gives one.
func (r *Route) RetryDelay(retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, 10*time.Minute)
	}
	ttl := r.TagTTL
	if ttl <= 0 {
		ttl = DefaultTagTTL
	}
	return min(ttl, 30*time.Second)
}

// ErrUnknownNamespace is returned for a ?ns= that names no route, or a bare
// name when no route is the default.
var ErrUnknownNamespace = errors.New("policy: no route serves this namespace")

// Router resolves repository names to routes. It is immutable and safe for
// concurrent use.
type Router struct {
	routes []*Route
	byName map[string]*Route
	hosted []*Route // by prefix length, longest first
	def    *Route
}

// NewRouter checks routes and builds a Router over them.
func NewRouter(routes []Route) (*Router, error) {
	r := &Router{byName: make(map[string]*Route, len(routes))}
	for i := range routes {
		rt := routes[i]
		if rt.Name == "" {
			return nil, fmt.Errorf("policy: route %d has no name", i)
		}
		if strings.Contains(rt.Name, "/") {
			return nil, fmt.Errorf("policy: route name %q must not contain '/'", rt.Name)
		}
		if _, dup := r.byName[rt.Name]; dup {
			return nil, fmt.Errorf("policy: route %q is configured twice", rt.Name)
		}
		if rt.Hosted {
			if rt.Origin != "" {
				return nil, fmt.Errorf("policy: hosted route %q cannot have an origin", rt.Name)
			}
			if rt.Prefix != "" && !strings.HasSuffix(rt.Prefix, "/") {
				rt.Prefix += "/"
			}
		} else if rt.Origin == "" {
			return nil, fmt.Errorf("policy: route %q needs an origin or hosted: true", rt.Name)
		}
		if rt.ForwardCredentials && (rt.Hosted || rt.AnonymousPull || rt.Caps&^CapPull != 0) {
			return nil, fmt.Errorf("policy: route %q forwards its clients' credentials: it must be a pull-through route, pull only, without anonymous pulls", rt.Name)
		}
		if err := errors.Join(compilePatterns(&rt, "allow", rt.Allow), compilePatterns(&rt, "deny", rt.Deny)); err != nil {
			return nil, fmt.Errorf("policy: route %q: %w", rt.Name, err)
		}
		if rt.Hosted && rt.TagTTL == 0 {
			rt.TagTTL = DefaultHostedTagTTL
		}
		if rt.Caps == 0 {
			rt.Caps = CapPull
			if rt.Hosted {
				rt.Caps |= CapPush | CapDelete
			}
		}
		p := &rt
		if rt.Default {
			if r.def != nil {
				return nil, fmt.Errorf("policy: routes %q and %q are both the default", r.def.Name, rt.Name)
			}
			r.def = p
		}
		r.routes = append(r.routes, p)
		r.byName[rt.Name] = p
		if rt.Hosted && rt.Prefix != "" {
			r.hosted = append(r.hosted, p)
		}
	}
	sort.SliceStable(r.hosted, func(i, j int) bool { return len(r.hosted[i].Prefix) > len(r.hosted[j].Prefix) })
	return r, nil
}

// Routes returns the configured routes in order.
func (r *Router) Routes() []*Route { return r.routes }

// Route returns the route called name, or nil.
func (r *Router) Route(name string) *Route { return r.byName[name] }

// Resolve picks the route for a request and the repository name to use
// with it. ns is containerd's ?ns= parameter (empty when absent) and name
// is the repository name from the URL path.
//
// The order is: ?ns=; a hosted prefix; a first path element that names a
// pull-through route; the default route. Hosted names are never shortened.
// A name outside the namespace of the route it comes to, such as
// ?ns=<hosted route> with a name outside that route's prefix, is refused.
func (r *Router) Resolve(ns, name string) (*Route, string, error) {
	rt, repo, err := r.resolve(ns, name)
	if err != nil {
		return nil, "", err
	}
	if !rt.Holds(repo) {
		return nil, "", fmt.Errorf("%w: %q is outside route %s (prefix %q)", ErrUnknownNamespace, repo, rt.Name, rt.Prefix)
	}
	return rt, repo, nil
}

func (r *Router) resolve(ns, name string) (*Route, string, error) {
	first, rest, nested := strings.Cut(name, "/")
	if ns != "" {
		rt := r.byName[ns]
		if rt == nil {
			return nil, "", fmt.Errorf("%w: %q", ErrUnknownNamespace, ns)
		}
		if nested && first == ns && !rt.Hosted {
			name = rest // containerd's override_path puts the host in the path as well
		}
		return rt, r.expand(rt, name), nil
	}
	for _, rt := range r.hosted {
		if strings.HasPrefix(name, rt.Prefix) {
			return rt, name, nil
		}
	}
	if nested {
		if rt := r.byName[first]; rt != nil && !rt.Hosted {
			return rt, r.expand(rt, rest), nil
		}
	}
	if r.def == nil {
		return nil, "", fmt.Errorf("%w: %q (no default route)", ErrUnknownNamespace, name)
	}
	return r.def, r.expand(r.def, name), nil
}

func (r *Router) expand(rt *Route, name string) string {
	if rt.ShortNamePrefix != "" && !strings.Contains(name, "/") {
		return rt.ShortNamePrefix + name
	}
	return name
}
