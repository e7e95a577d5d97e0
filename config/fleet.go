package config

import (
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/edgeregistry/edge/policy"
)

// Fleet is how the node finds the other nodes of the fleet and serves
// them (package fleet). Without a peer listener the node is on its own.
type Fleet struct {
	// PeerListen is the peer listener's address ("": no fleet).
	PeerListen string `yaml:"peer_listen,omitempty"`
	// Advertise is the host:port the other nodes reach the peer listener
	// at (default: the address it listens on).
	Advertise string `yaml:"advertise,omitempty"`
	// SecretFile holds the fleet secret, at least 32 bytes, shared by
	// every node; $EDGE_FLEET_SECRET, when set, is the secret instead.
	SecretFile string `yaml:"secret_file,omitempty"`
	// TTL is how long a node counts as live after its last announcement
	// (default 30s; it announces every third of it).
	TTL Duration `yaml:"ttl,omitempty"`
}

// GC is the garbage collection of the global tier (package gc).
type GC struct {
	// Schedule runs a collection this often in serve (default 0: never;
	// run edge gc, or give the schedule to one node of the fleet).
	Schedule Duration `yaml:"schedule,omitempty"`
	// Retention keeps pull-through content this long after its last read
	// or write (default 720h).
	Retention Duration `yaml:"retention,omitempty"`
	// Grace keeps new hosted content this long before anything must
	// reference it (default 24h).
	Grace Duration `yaml:"grace,omitempty"`
	// ReadsInterval is how often a node writes its last-read records to
	// the global tier (default 1h).
	ReadsInterval Duration `yaml:"reads_interval,omitempty"`
}

// validate checks the fleet section; backend is the global tier's.
func (f Fleet) validate(backend string) error {
	if f.PeerListen == "" {
		return nil
	}
	var errs []error
	host, _, err := net.SplitHostPort(f.PeerListen)
	switch {
	case err != nil:
		errs = append(errs, fmt.Errorf("fleet.peer_listen: %w", err))
	case backend == "none":
		errs = append(errs, errors.New("fleet: the nodes find each other through the global tier: global.backend must not be none"))
	case f.Advertise == "" && (host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified()):
		errs = append(errs, errors.New("fleet.advertise: peer_listen listens on every address; say which one the other nodes reach"))
	}
	if f.TTL != 0 && f.TTL < Duration(time.Second) {
		errs = append(errs, errors.New("fleet.ttl: at least 1s"))
	}
	return errors.Join(errs...)
}

// validate checks the gc section against the routes' tag TTLs.
func (g GC) validate(routes []Route) error {
	var errs []error
	if g.Schedule < 0 || g.Retention < 0 || g.Grace < 0 || g.ReadsInterval < 0 {
		errs = append(errs, errors.New("gc: durations must not be negative"))
	}
	if g.Retention > 0 && g.Retention < g.Grace {
		errs = append(errs, errors.New("gc: retention must not be shorter than grace"))
	}
	for _, r := range routes {
		if g.Retention > 0 && r.TagTTL >= g.Retention {
			errs = append(errs, fmt.Errorf("routes (%s): tag_ttl %v is not shorter than gc.retention: a tag read all along would look unread to the collection", r.Name, time.Duration(r.TagTTL)))
		}
	}
	return errors.Join(errs...)
}

// check returns the errors of a route's prewarm: it needs a fleet, a
// pull-through route whose content the global tier may hold, and sizes
// that make sense.
func (p Prewarm) check(at string, r Route, fleet bool) []error {
	if !p.Enabled {
		return nil
	}
	var errs []error
	if r.Hosted || r.ForwardCredentials {
		errs = append(errs, fmt.Errorf("%s: prewarm applies to pull-through routes that do not forward credentials", at))
	}
	if !fleet {
		errs = append(errs, fmt.Errorf("%s: prewarm needs the fleet (fleet.peer_listen): hints travel through its members", at))
	}
	if p.Budget < 0 || p.Window < 0 {
		errs = append(errs, fmt.Errorf("%s: prewarm budget and window must not be negative", at))
	}
	return errs
}

// Prewarm is a route's rollout prewarm: see the README, "Rollout prewarm".
type Prewarm struct {
	Enabled bool `yaml:"enabled,omitempty"`
	// Budget bounds the blob bytes fetched for one moved tag (default 2GiB).
	Budget Size `yaml:"budget,omitempty"`
	// Window is how lately this node must have served the tag (default 24h).
	Window Duration `yaml:"window,omitempty"`
}

// policy is the route's prewarm with its defaults, off (the zero value)
// unless enabled on a pull-through route that does not forward
// credentials.
func (p Prewarm) policy(r Route) policy.Prewarm {
	if !p.Enabled || r.Hosted || r.ForwardCredentials {
		return policy.Prewarm{}
	}
	out := policy.Prewarm{Budget: int64(p.Budget), Window: time.Duration(p.Window)}
	if out.Budget <= 0 {
		out.Budget = 2 << 30
	}
	if out.Window <= 0 {
		out.Window = 24 * time.Hour
	}
	return out
}
