package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/time/rate"
)

// Option configures an Authorizer.
type Option func(*Authorizer)

// WithLogger sets the logger; the default discards.
func WithLogger(l *slog.Logger) Option { return func(a *Authorizer) { a.log = l } }

// WithClock sets the clock of the failure limits, the verification cache
// and the checks of the htpasswd file.
func WithClock(now func() time.Time) Option { return func(a *Authorizer) { a.now = now } }

// WithRegisterer registers the authorizer's metrics.
func WithRegisterer(reg prometheus.Registerer) Option { return func(a *Authorizer) { a.reg = reg } }

// WithReloadInterval sets how often, at most, the htpasswd file is checked
// for changes; the default is 5s.
func WithReloadInterval(d time.Duration) Option { return func(a *Authorizer) { a.reloadEvery = d } }

// WithFailureLimit sets how many failed logins of one user name from one
// client address within window refuse that pair; the default is 10 in a
// minute.
func WithFailureLimit(n int, window time.Duration) Option {
	return func(a *Authorizer) { a.failMax, a.failWindow = n, window }
}

// WithAddressFailureLimit sets how many failed logins from one client
// address, whatever the user names, within the window of WithFailureLimit
// refuse that address; the default is 50. Addresses that logged in as a
// user lately are not held by it for that user.
func WithAddressFailureLimit(n int) Option { return func(a *Authorizer) { a.addrMax = n } }

// WithUserRate bounds how often one user name is checked from addresses
// that have not logged in as it lately, across all of them: perMinute
// checks a minute, up to burst at once. The default is 10 a minute, burst
// 10.
func WithUserRate(perMinute float64, burst int) Option {
	return func(a *Authorizer) { a.userRate, a.userBurst = rate.Limit(perMinute/60), burst }
}

// WithTrust sets how long an address that logged in as a user stays
// exempt from the address and user limits for that user; the default is
// 7 days.
func WithTrust(ttl time.Duration) Option { return func(a *Authorizer) { a.trustTTL = ttl } }

// WithBackoff sets how long logins are refused after the failure limit is
// reached: base the first time, doubling with each lockout that follows
// within ceil of the last, up to ceil. The default is 1m up to 30m.
func WithBackoff(base, ceil time.Duration) Option {
	return func(a *Authorizer) { a.backoffBase, a.backoffMax = base, ceil }
}

// WithVerifyCache sets how many successful verifications are remembered,
// and for how long; the default is 1024 for 10m.
func WithVerifyCache(size int, ttl time.Duration) Option {
	return func(a *Authorizer) { a.cacheSize, a.cacheTTL = size, ttl }
}

// WithTrustedProxies names the proxies in front of the node: a request
// whose peer is in one of prefixes is counted against the last address of
// its X-Forwarded-For that is not in them. Without them, against the peer.
func WithTrustedProxies(prefixes ...netip.Prefix) Option {
	return func(a *Authorizer) { a.proxies = append(a.proxies, prefixes...) }
}

// WithTrustedNetworks names client networks (a CI's runners, say) whose
// addresses are trusted for every user, as an address that logged in as a
// user is: only the failures of their own (address, user) pair hold them.
func WithTrustedNetworks(prefixes ...netip.Prefix) Option {
	return func(a *Authorizer) { a.networks = append(a.networks, prefixes...) }
}

// check rejects options that cannot work together.
func (a *Authorizer) check() error {
	var errs []error
	if a.log == nil || a.now == nil {
		errs = append(errs, errors.New("nil logger or clock"))
	}
	if a.reloadEvery <= 0 {
		errs = append(errs, fmt.Errorf("reload interval %v is not positive", a.reloadEvery))
	}
	if a.failMax < 1 || a.failWindow <= 0 {
		errs = append(errs, fmt.Errorf("failure limit %d in %v: need at least 1 in a positive window", a.failMax, a.failWindow))
	}
	if a.addrMax < 1 {
		errs = append(errs, fmt.Errorf("address failure limit %d: need at least 1", a.addrMax))
	}
	if a.userRate <= 0 || a.userBurst < 1 {
		errs = append(errs, fmt.Errorf("user rate %v/s, burst %d: need a positive rate and burst", float64(a.userRate), a.userBurst))
	}
	if a.trustTTL < 0 {
		errs = append(errs, fmt.Errorf("trust time %v is negative", a.trustTTL))
	}
	if a.backoffBase <= 0 || a.backoffMax < a.backoffBase {
		errs = append(errs, fmt.Errorf("back-off %v up to %v: need 0 < base <= ceiling", a.backoffBase, a.backoffMax))
	}
	if a.tableSize < 1 {
		errs = append(errs, fmt.Errorf("limit tables of %d keys: need at least 1", a.tableSize))
	}
	if a.cacheSize < 1 || a.cacheTTL <= 0 {
		errs = append(errs, fmt.Errorf("verification cache of %d for %v: need a positive size and time", a.cacheSize, a.cacheTTL))
	}
	if strings.ContainsFunc(a.realm, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		errs = append(errs, errors.New("realm has control characters"))
	}
	if a.tokens != nil {
		errs = append(errs, a.tokens.check(a.now)...)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}
