package auth

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// WithFailureLimit sets how many failed logins within window refuse a
// client address or a user name; the default is 10 in a minute.
func WithFailureLimit(n int, window time.Duration) Option {
	return func(a *Authorizer) { a.failMax, a.failWindow = n, window }
}

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

// WithClientAddr sets how the client address whose failures are counted is
// found; the default is the host of the request's RemoteAddr, IPv6
// addresses counted by /64. Behind a proxy, read the header it sets.
func WithClientAddr(f func(*http.Request) string) Option {
	return func(a *Authorizer) { a.clientAddr = f }
}

// check rejects options that cannot work together.
func (a *Authorizer) check() error {
	var errs []error
	if a.log == nil || a.now == nil || a.clientAddr == nil {
		errs = append(errs, errors.New("nil logger, clock or client address function"))
	}
	if a.reloadEvery <= 0 {
		errs = append(errs, fmt.Errorf("reload interval %v is not positive", a.reloadEvery))
	}
	if a.failMax < 1 || a.failWindow <= 0 {
		errs = append(errs, fmt.Errorf("failure limit %d in %v: need at least 1 in a positive window", a.failMax, a.failWindow))
	}
	if a.backoffBase <= 0 || a.backoffMax < a.backoffBase {
		errs = append(errs, fmt.Errorf("back-off %v up to %v: need 0 < base <= ceiling", a.backoffBase, a.backoffMax))
	}
	if a.cacheSize < 1 || a.cacheTTL <= 0 {
		errs = append(errs, fmt.Errorf("verification cache of %d for %v: need a positive size and time", a.cacheSize, a.cacheTTL))
	}
	if strings.ContainsFunc(a.realm, func(r rune) bool { return r < ' ' || r == 0x7f }) {
		errs = append(errs, errors.New("realm has control characters"))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("auth: %w", err)
	}
	return nil
}
