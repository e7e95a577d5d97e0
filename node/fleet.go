package node

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/fleet"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/policy"
)

// FleetSecretEnv, when set, is the fleet secret, whatever fleet.secret_file
// says.
const FleetSecretEnv = "EDGE_FLEET_SECRET"

// fleetSecret reads the fleet secret: $EDGE_FLEET_SECRET, or the secret
// file, which only its owner may read.
func fleetSecret(path string) ([]byte, error) {
	if s := strings.TrimSpace(os.Getenv(FleetSecretEnv)); s != "" {
		return []byte(s), nil
	}
	if path == "" {
		return nil, fmt.Errorf("fleet: no secret: set fleet.secret_file or $%s", FleetSecretEnv)
	}
	s, err := readTokenFile(path)
	if err != nil {
		return nil, fmt.Errorf("fleet secret: %w", err)
	}
	return []byte(s), nil
}

// nodeIdentity is this node's ID in the fleet, stable across restarts:
// made once, at random, and kept in the data directory, written whole.
func nodeIdentity(dataDir string) (string, error) {
	path := filepath.Join(dataDir, "node.id")
	for {
		b, err := os.ReadFile(path)
		if err == nil {
			id := strings.TrimSpace(string(b))
			if id == "" {
				return "", fmt.Errorf("node id: %s is empty", path)
			}
			return id, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("node id: %w", err)
		}
		r := make([]byte, 8)
		_, _ = rand.Read(r)
		id := "n" + hex.EncodeToString(r)
		err = createWhole(path, []byte(id+"\n"), 0o644)
		if err == nil {
			return id, nil
		}
		if !errors.Is(err, fs.ErrExist) { // else another process made one: read it
			return "", fmt.Errorf("node id: %w", err)
		}
	}
}

// peerMetrics count the peer traffic: what this node asked of its peers,
// and what it answered them.
type peerMetrics struct {
	asked, answered *prometheus.CounterVec
}

func newPeerMetrics(reg prometheus.Registerer) *peerMetrics {
	m := &peerMetrics{
		asked: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_peer_requests_total",
			Help: "Blobs and manifests this node asked of peers, by path (region: the blob's owner in the region; fleet: its filler for the fleet; manifest: a manifest's filler) and result (hit; miss: the peer does not have it, or its own tiers failed; busy: no fill slot free there; error: the peer failed, and is passed over for a while)."}, []string{"path", "result"}),
		answered: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "edge_peer_answers_total",
			Help: "Requests of other nodes on the peer listener, by status code."}, []string{"code"}),
	}
	for _, path := range []string{"region", "fleet", "manifest"} {
		for _, r := range []string{"hit", "miss", "busy", "error"} {
			m.asked.WithLabelValues(path, r)
		}
	}
	reg.MustRegister(m.asked, m.answered)
	return m
}

// membersCollector exports the live members of each region as this node
// sees them: edge_fleet_members{peer_region}; every series of the node carries its own region.
type membersCollector struct {
	n    *Node
	desc *prometheus.Desc
}

func newMembersCollector(n *Node) *membersCollector {
	return &membersCollector{n: n, desc: prometheus.NewDesc("edge_fleet_members",
		"Live members of each region (peer_region) as this node sees them, itself included.", []string{"peer_region"}, nil)}
}

func (c *membersCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

func (c *membersCollector) Collect(ch chan<- prometheus.Metric) {
	if c.n.fleet == nil {
		return
	}
	for region, n := range c.n.fleet.Counts() {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, float64(n), region)
	}
}

// peerHandler serves the fleet's signed requests for the local tier's
// blobs, on the peer listener.
func (n *Node) peerHandler(sign *fleet.Signer, m *peerMetrics) http.Handler {
	blobs := func(ctx context.Context, d digest.Digest, ask fleet.Ask) (fleet.Content, error) {
		var rt *policy.Route
		if ask.Route != "" {
			var err error
			if rt, err = n.fillerRoute(ask); err != nil {
				return nil, err
			}
		}
		b, err := n.engine.PeerBlob(ctx, peerOf(ctx), d, rt, ask.Repo, ask.Join)
		if err != nil {
			return nil, err
		}
		rs, ok := b.Content.(io.ReadSeeker)
		if !ok {
			b.Close()
			return nil, fmt.Errorf("blob %s: its size is not known yet", d)
		}
		return peerContent{ReadSeeker: rs, b: b}, nil
	}
	manifests := func(ctx context.Context, d digest.Digest, ask fleet.Ask) ([]byte, string, error) {
		rt, err := n.fillerRoute(ask)
		if err != nil {
			return nil, "", err
		}
		m, err := n.engine.PeerManifest(ctx, peerOf(ctx), d, rt, ask.Repo)
		return m.Body, m.MediaType, err
	}
	h := fleet.Handler(sign, blobs, manifests, func(err error) int {
		switch {
		case errors.Is(err, oci.ErrNotFound):
			return http.StatusNotFound
		case errors.Is(err, cache.ErrFillsBusy):
			return http.StatusServiceUnavailable
		}
		return http.StatusBadGateway // the tiers below failed, not this node
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w, code: http.StatusOK}
		defer func() { m.answered.WithLabelValues(strconv.Itoa(sw.code)).Inc() }()
		// A signature covers the host it was made for: a request signed for
		// another member is not this one's to answer.
		if n.fleet == nil || r.Host != n.fleet.Self().Peer {
			http.Error(sw, "not this member's address", http.StatusMisdirectedRequest)
			return
		}
		if id, err := sign.Check(r); err == nil {
			r = r.WithContext(context.WithValue(r.Context(), peerKey{}, id))
		}
		h.ServeHTTP(sw, r)
	})
}

// fillerRoute is the route a peer names this node the filler for, of blobs
// and manifests: only what this node would serve, a pull-through route it
// has, which shares its content with the fleet and lets the repository
// through; else not found.
func (n *Node) fillerRoute(ask fleet.Ask) (*policy.Route, error) {
	rt := n.router.Route(ask.Route)
	if rt == nil || rt.Hosted || rt.ForwardCredentials || !rt.Permits(ask.Repo, "") {
		return nil, fmt.Errorf("route %q, repository %q: not served here for the fleet: %w", ask.Route, ask.Repo, oci.ErrNotFound)
	}
	return rt, nil
}

// peerContent is a blob of the engine as the peer listener serves it.
type peerContent struct {
	io.ReadSeeker
	b *cache.Blob
}

func (c peerContent) Close() error { return c.b.Close() }
func (c peerContent) Err() error   { return c.b.Err() }

type peerKey struct{}

// peerOf is the member that signed the request of ctx, for the fill
// slots; the peer handler puts it there.
func peerOf(ctx context.Context) string {
	p, _ := ctx.Value(peerKey{}).(string)
	return p
}

// statusWriter notes the status of a response.
type statusWriter struct {
	http.ResponseWriter
	code int
}

func (w *statusWriter) WriteHeader(code int) {
	w.code = code
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// joinFleet builds this node's membership of the fleet, announced with the
// peer listener's address, once it listens. It needs the global tier.
func (n *Node) joinFleet(sign *fleet.Signer, id, peer string) error {
	if n.global == nil {
		return errors.New("fleet: the nodes find each other through the global tier: global.backend must not be none")
	}
	opts := []fleet.Option{fleet.WithLogger(n.log.With("component", "fleet"))}
	if ttl := time.Duration(n.cfg.Fleet.TTL); ttl > 0 {
		opts = append(opts, fleet.WithTTL(ttl))
	}
	m, err := fleet.New(n.global.Backend(), sign, fleet.Member{ID: id, Region: n.cfg.Region, Peer: peer}, opts...)
	if err != nil {
		return err
	}
	n.fleet = m
	return nil
}

// Fleet returns the node's membership of the fleet, nil when it has no
// peer listener.
func (n *Node) Fleet() *fleet.Membership { return n.fleet }

// runFleet announces the node and follows the fleet until ctx ends, then
// leaves it.
func (n *Node) runFleet(ctx context.Context) {
	if n.fleet != nil {
		n.fleet.Run(ctx)
	}
}

// peerClient asks the fleet for blobs over the peers' signed requests: a
// blob's owner in this node's region, or its filler for the fleet;
// cache.Peers.
type peerClient struct {
	metrics *peerMetrics
	m       *fleet.Membership
	sign    *fleet.Signer
	self    string
	region  string
	http    *http.Client
	idle    time.Duration
	passFor time.Duration // how long a peer that failed is passed over
	now     func() time.Time

	mu     sync.Mutex
	failed map[string]time.Time // member ID, or ID and digest: passed over until then
}

// Peer timeouts. A peer's headers may wait for a fill of its own, which
// may wait for the origin's: a live peer that does not answer within
// peerHeaders costs a cold pull that long once, then it is passed over. A
// dead one refuses the connection at once, and one killed mid-stream
// breaks it. A peer that sends nothing for longer than its own fill waits
// for its source (the fill idle timeout), plus peerIdleMargin, is taken
// over from the byte reached: a filler whose origin is merely slow is not.
const (
	peerHeaders    = 15 * time.Second
	peerIdleMargin = 15 * time.Second
)

// errPeerStalled ends a peer's response that sent nothing for peerIdle.
var errPeerStalled = errors.New("the peer sent nothing for too long")

// join gives the client the node's membership, once the peer listener
// listens; until then (New has not returned) it asks nobody.
func (p *peerClient) join(m *fleet.Membership) {
	self := m.Self()
	tr := &http.Transport{
		DialContext:           (&net.Dialer{Timeout: time.Second}).DialContext,
		ResponseHeaderTimeout: peerHeaders,
		MaxIdleConnsPerHost:   16,
		IdleConnTimeout:       time.Minute,
	}
	p.m, p.self, p.region = m, self.ID, self.Region
	p.http = &http.Client{Transport: tr, CheckRedirect: func(*http.Request, []*http.Request) error {
		return http.ErrUseLastResponse // a peer answers itself, or not at all
	}}
	if p.idle == 0 {
		p.idle = 60*time.Second + peerIdleMargin
	}
	if p.now == nil {
		p.now = time.Now
	}
	if p.passFor == 0 {
		p.passFor = 30 * time.Second
	}
	p.failed = map[string]time.Time{}
}

// close drops the client's idle connections.
func (p *peerClient) close() {
	if p.http != nil {
		p.http.CloseIdleConnections()
	}
}

// passedOver returns whether a member failed lately: for any blob, or for
// blob d.
func (p *peerClient) passedOver(d digest.Digest) func(fleet.Member) bool {
	return func(mb fleet.Member) bool {
		p.mu.Lock()
		defer p.mu.Unlock()
		now := p.now()
		for _, k := range []string{mb.ID, mb.ID + " " + string(d)} {
			if until, ok := p.failed[k]; ok && now.Before(until) {
				return true
			}
		}
		return false
	}
}

func (p *peerClient) Pick(d digest.Digest, forFleet bool) (string, bool) {
	if p.m == nil {
		return "", false
	}
	var mb fleet.Member
	var ok bool
	if forFleet {
		mb, ok = p.m.Filler(d, p.passedOver(d))
	} else {
		mb, ok = p.m.Owner(p.region, d, p.passedOver(d))
	}
	if !ok || mb.ID == p.self {
		return "", false
	}
	return mb.ID, true
}

// Failed passes peer over for a while: for every blob when it cannot be
// reached (a connection to it is refused, or cannot be made: it is down or
// cut off), for d alone otherwise (it was slow to answer, stalled on d,
// broke off, or sent bytes of d that did not verify), so that one bad or
// slow transfer does not move every blob it owns or fills.
func (p *peerClient) Failed(peer string, d digest.Digest, err error) {
	key := peer + " " + string(d)
	var oe *net.OpError
	if errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.EHOSTUNREACH) ||
		errors.As(err, &oe) && oe.Op == "dial" {
		key = peer
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	now := p.now()
	for k, until := range p.failed {
		if !now.Before(until) {
			delete(p.failed, k)
		}
	}
	p.failed[key] = now.Add(p.passFor)
}

func (p *peerClient) Open(ctx context.Context, peer string, d digest.Digest, offset int64, ask cache.PeerAsk) (io.ReadCloser, int64, error) {
	path := "region"
	if ask.Route != "" {
		path = "fleet"
	}
	asked := func(result string) { p.metrics.asked.WithLabelValues(path, result).Inc() }
	ctx, cancel := context.WithCancelCause(ctx)
	hdr := http.Header{}
	if offset > 0 {
		hdr.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	res, err := p.get(ctx, peer, func(addr string) string {
		return fleet.BlobURL(addr, d, fleet.Ask{Route: ask.Route, Repo: ask.Repo, Join: ask.Join})
	}, hdr, asked)
	if err != nil {
		cancel(nil)
		return nil, 0, err
	}
	size := int64(-1)
	switch {
	case res.StatusCode == http.StatusNotFound || res.StatusCode == http.StatusServiceUnavailable || res.StatusCode == http.StatusBadGateway:
		// Not there, busy, or its own tiers failed: nothing to blame
		// the peer for; the next tier answers.
		res.Body.Close()
		cancel(nil)
		result := map[int]string{http.StatusNotFound: "miss", http.StatusServiceUnavailable: "busy", http.StatusBadGateway: "miss"}[res.StatusCode]
		asked(result)
		return nil, 0, fmt.Errorf("blob %s: peer %s: %s: %w", d, peer, res.Status, localtier.ErrNotFound)
	case offset == 0 && res.StatusCode == http.StatusOK && res.ContentLength >= 0:
		size = res.ContentLength
	case offset > 0 && res.StatusCode == http.StatusPartialContent:
		var start, end, total int64
		if _, err := fmt.Sscanf(res.Header.Get("Content-Range"), "bytes %d-%d/%d", &start, &end, &total); err == nil && start == offset &&
			end == total-1 && total > offset && res.ContentLength == total-offset {
			size = total
		}
	}
	if size < 0 {
		res.Body.Close()
		cancel(nil)
		asked("error")
		return nil, 0, fmt.Errorf("peer %s: blob %s: %s", peer, d, res.Status)
	}
	asked("hit")
	return newIdleBody(ctx, res.Body, p.idle, cancel), size, nil
}

// get sends peer a signed GET of the URL that url makes of its address,
// with hdr; a request that fails to be sent is counted an error.
func (p *peerClient) get(ctx context.Context, peer string, url func(addr string) string, hdr http.Header, asked func(string)) (*http.Response, error) {
	mb, ok := p.m.Member(peer)
	if !ok {
		return nil, fmt.Errorf("peer %s: no longer a member", peer)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url(mb.Peer), nil)
	if err != nil {
		return nil, err
	}
	maps.Copy(req.Header, hdr)
	p.sign.Sign(req)
	res, err := p.http.Do(req)
	if err != nil {
		asked("error")
		return nil, fmt.Errorf("peer %s: %w", peer, err)
	}
	return res, nil
}

func (p *peerClient) OpenManifest(ctx context.Context, peer string, d digest.Digest, ask cache.PeerAsk) ([]byte, string, error) {
	asked := func(result string) { p.metrics.asked.WithLabelValues("manifest", result).Inc() }
	res, err := p.get(ctx, peer, func(addr string) string {
		return fleet.ManifestURL(addr, d, fleet.Ask{Route: ask.Route, Repo: ask.Repo})
	}, nil, asked)
	if err != nil {
		return nil, "", err
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusOK:
	case http.StatusNotFound, http.StatusServiceUnavailable, http.StatusBadGateway:
		asked("miss")
		return nil, "", fmt.Errorf("manifest %s: peer %s: %s: %w", d, peer, res.Status, localtier.ErrNotFound)
	default:
		asked("error")
		return nil, "", fmt.Errorf("peer %s: manifest %s: %s", peer, d, res.Status)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, oci.MaxManifestSize+1))
	if err != nil {
		asked("error")
		return nil, "", fmt.Errorf("peer %s: manifest %s: %w", peer, d, err)
	}
	asked("hit")
	return body, res.Header.Get("Content-Type"), nil
}

// idleBody is a peer's response body that ends with errPeerStalled once
// nothing arrived for idle: the fill then takes over from the byte reached,
// which the engine's own watchdog, meant for origins, would not do.
type idleBody struct {
	io.ReadCloser
	t      *time.Timer
	idle   time.Duration
	ctx    context.Context // the request's
	cancel context.CancelCauseFunc
}

func newIdleBody(ctx context.Context, rc io.ReadCloser, idle time.Duration, cancel context.CancelCauseFunc) *idleBody {
	b := &idleBody{ReadCloser: rc, idle: idle, ctx: ctx, cancel: cancel}
	b.t = time.AfterFunc(idle, func() { cancel(errPeerStalled) })
	return b
}

func (b *idleBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	if n > 0 {
		b.t.Reset(b.idle)
	}
	if cause := context.Cause(b.ctx); err != nil && cause != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w (%w)", cause, err)
	}
	return n, err
}

func (b *idleBody) Close() error {
	b.t.Stop()
	b.cancel(nil)
	return b.ReadCloser.Close()
}
