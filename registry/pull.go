package registry

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/cache"
)

// maxTagsPage bounds ?n= for tag lists.
const maxTagsPage = 10000

func parseDigest(s string) (digest.Digest, error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", newError(errcode.ErrorCodeDigestInvalid, "invalid digest", s)
	}
	return d, nil
}

func (s *Server) manifest(w http.ResponseWriter, req *request) error {
	r := req.client
	if strings.Contains(req.ref, ":") {
		if _, err := parseDigest(req.ref); err != nil {
			return err
		}
	} else if !validTag(req.ref) {
		return newError(errcode.ErrorCodeTagInvalid, "invalid tag", req.ref)
	}
	ctx := cache.WithClient(r.Context(), s.client(r)) // a miss is charged to its client
	m, err := s.pull.Manifest(ctx, req.route, req.repo, req.ref)
	if err != nil {
		return err
	}
	if !accepts(r, m.MediaType) {
		child, ok := platformChild(m.Body, r)
		if !ok {
			return newError(errcode.ErrorCodeManifestUnknown,
				fmt.Sprintf("manifest is a %s, which the request's Accept header does not allow", m.MediaType), nil)
		}
		if m, err = s.pull.Manifest(ctx, req.route, req.repo, child.String()); err != nil {
			return err
		}
	}
	// The hottest response of a mirror: canonical keys set directly, the
	// four values in one allocation.
	v := make([]string, 4)
	v[0], v[1], v[2] = m.MediaType, strconv.Itoa(len(m.Body)), m.Digest.String()
	v[3] = `"` + v[2] + `"`
	h := w.Header()
	h["Content-Type"], h["Content-Length"], h["Docker-Content-Digest"], h["Etag"] = v[0:1:1], v[1:2:2], v[2:3:3], v[3:4:4]
	if m.Stale {
		h.Set("Warning", `110 - "Response is Stale"`)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(m.Body)
	}
	return nil
}

// headBlob answers a HEAD of blob d: its size, from a tier that knows it,
// without reading it.
func (s *Server) headBlob(w http.ResponseWriter, req *request, d digest.Digest, etag string) error {
	r := req.client
	size, err := s.pull.StatBlob(r.Context(), req.route, req.repo, d)
	if err != nil {
		return err
	}
	if err := ifMatch(r, etag); err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", "application/octet-stream")
	if size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(size, 10))
	}
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Accept-Ranges", "bytes")
	h.Set("Etag", etag)
	w.WriteHeader(http.StatusOK)
	return nil
}

// blob answers a GET or HEAD of a blob.
func (s *Server) blob(w http.ResponseWriter, req *request) error {
	r := req.client
	d, err := parseDigest(req.ref)
	if err != nil {
		return err
	}
	h := w.Header()
	etag := `"` + d.String() + `"`
	if r.Method == http.MethodHead {
		return s.headBlob(w, req, d, etag)
	}
	if err := checkRange(r.Header.Get("Range")); err != nil {
		return err
	}
	b, err := s.pull.Blob(cache.WithClient(r.Context(), s.client(r)), req.route, req.repo, d)
	if err != nil {
		return err
	}
	defer b.Close()
	if err := ifMatch(r, etag); err != nil {
		return err
	}
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", etag)
	h.Set("Cache-Control", "max-age=31536000, immutable")
	rng := r.Header.Get("Range")
	rs, seekable := b.Content.(io.ReadSeeker)
	file, isFile := b.Content.(*os.File)
	switch {
	case isFile && rng == "" && !conditional(r):
		// The common warm pull: the whole file, sent by the kernel.
		h.Set("Content-Length", strconv.FormatInt(b.Size, 10))
		h.Set("Accept-Ranges", "bytes")
		w.WriteHeader(http.StatusOK)
		if rf, ok := w.(io.ReaderFrom); ok {
			// A LimitedReader over the file keeps the sendfile path: an
			// *os.File would be copied through its WriteTo instead.
			_, _ = rf.ReadFrom(&io.LimitedReader{R: file, N: b.Size})
		} else {
			_, _ = io.Copy(w, file)
		}
	case seekable && b.Size >= 0 && (rng != "" || b.Tier == "local" || conditional(r)):
		if rng != "" && !satisfiable(rng, b.Size) {
			h.Set("Content-Range", "bytes */"+strconv.FormatInt(b.Size, 10))
			return newError(errcode.ErrorCodeRangeInvalid, "requested range not satisfiable", rng)
		}
		if err := s.serveContent(w, req, b, rs); err != nil {
			return err
		}
	default:
		// A whole blob streamed as it fills (or one of unknown size).
		if b.Size >= 0 {
			h.Set("Content-Length", strconv.FormatInt(b.Size, 10))
		}
		h.Set("Accept-Ranges", "bytes")
		w.WriteHeader(http.StatusOK)
		_, _ = io.Copy(w, b.Content)
	}
	if err := b.Err(); err != nil {
		// Headers are out: break the transfer so the client cannot take a
		// short or wrong body for a complete one.
		s.log.Error("aborting a blob response", "route", req.route.Name, "repo", req.repo, "digest", d, "err", err)
		panic(http.ErrAbortHandler)
	}
	return nil
}

func (s *Server) tags(w http.ResponseWriter, req *request) error {
	r := req.client
	q := r.URL.Query()
	n := 0
	if v := q.Get("n"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 0 || n > maxTagsPage {
			return newError(errcode.ErrorCodePaginationNumberInvalid,
				fmt.Sprintf("n must be a number from 0 to %d", maxTagsPage), v)
		}
	}
	last := q.Get("last")
	var tags []string
	if _, set := q["n"]; !set || n > 0 {
		var err error
		if tags, err = s.pull.Tags(r.Context(), req.route, req.repo, n, last); err != nil {
			return err
		}
	}
	if tags == nil {
		tags = []string{}
	}
	if n > 0 && len(tags) == n {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {tags[len(tags)-1]}}
		if ns := q.Get("ns"); ns != "" {
			next.Set("ns", ns)
		}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, req.name, next.Encode()))
	}
	w.Header().Set("Content-Type", "application/json")
	body, err := json.Marshal(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{req.name, tags})
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}

// serveContent answers a range or a precondition with http.ServeContent.
// The end of a response from a blob that is still filling waits for the
// fill to verify, so no range completes with wrong bytes.
func (s *Server) serveContent(w http.ResponseWriter, req *request, b *cache.Blob, rs io.ReadSeeker) error {
	r := req.client
	if b.Tier == "local" {
		return serveContent(w, r, rs)
	}
	held := &heldTail{ResponseWriter: w}
	if err := serveContent(held, r, rs); err != nil {
		return err
	}
	if len(held.tail) == 0 {
		return nil
	}
	if err := b.Wait(r.Context()); err != nil {
		s.log.Error("aborting a ranged blob response", "route", req.route.Name, "repo", req.repo, "digest", b.Digest, "err", err)
		panic(http.ErrAbortHandler)
	}
	_, _ = w.Write(held.tail)
	return nil
}

// heldTail passes a response body on but for its last rangeHoldBack
// bytes, which the handler sends once the content is verified.
type heldTail struct {
	http.ResponseWriter
	tail []byte
}

// rangeHoldBack is as much as a whole streamed blob holds back.
const rangeHoldBack = 32 << 10

func (h *heldTail) Write(p []byte) (int, error) {
	h.tail = append(h.tail, p...)
	if over := len(h.tail) - rangeHoldBack; over > 0 {
		if _, err := h.ResponseWriter.Write(h.tail[:over]); err != nil {
			return 0, err
		}
		h.tail = append(h.tail[:0], h.tail[over:]...)
	}
	return len(p), nil
}

// conditional reports whether r carries a precondition that
// http.ServeContent answers (304, 412, If-Range).
func conditional(r *http.Request) bool {
	h := r.Header
	return h.Get("If-None-Match") != "" || h.Get("If-Modified-Since") != "" || h.Get("If-Match") != "" ||
		h.Get("If-Unmodified-Since") != "" || h.Get("If-Range") != ""
}
