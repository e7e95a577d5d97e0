package admin

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/edgeregistry/edge/internal/oci"
)

// Handler serves the admin API under /admin/v1/ to requests whose
// Authorization is "Bearer <token>". An empty token refuses every request.
func Handler(s *Service, token string, log *slog.Logger) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /admin/v1/repositories", func(w http.ResponseWriter, r *http.Request) {
		rs, err := s.Repositories(r.Context())
		reply(w, log, rs, err)
	})
	mux.HandleFunc("GET /admin/v1/inspect", func(w http.ResponseWriter, r *http.Request) {
		in, err := s.Inspect(r.Context(), r.URL.Query().Get("name"), r.URL.Query().Get("global") == "true")
		reply(w, log, in, err)
	})
	mux.HandleFunc("POST /admin/v1/purge", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name   string `json:"name"`
			Global bool   `json:"global"`
		}
		if !decode(w, r, &req) {
			return
		}
		p, err := s.Purge(r.Context(), req.Name, req.Global)
		if err == nil {
			log.Info("purged", "name", req.Name, "global", req.Global, "tags", p.Tags, "manifests", p.Manifests, "blobs", p.Blobs)
		}
		reply(w, log, p, err)
	})
	mux.HandleFunc("GET /admin/v1/pins", func(w http.ResponseWriter, r *http.Request) { reply(w, log, s.Pins(), nil) })
	mux.HandleFunc("POST /admin/v1/pins", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Name string `json:"name"`
		}
		if !decode(w, r, &req) {
			return
		}
		ds, err := s.Pin(r.Context(), req.Name)
		if err == nil {
			log.Info("pinned", "name", req.Name, "digests", len(ds))
		}
		reply(w, log, PinInfo{Name: req.Name, Digests: ds}, err)
	})
	mux.HandleFunc("DELETE /admin/v1/pins", func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("name")
		err := s.Unpin(r.Context(), name)
		if err == nil {
			log.Info("unpinned", "name", name)
		}
		reply(w, log, struct{}{}, err)
	})
	mux.HandleFunc("POST /admin/v1/prefetch", func(w http.ResponseWriter, r *http.Request) {
		var req PrefetchRequest
		if !decode(w, r, &req) {
			return
		}
		prefetch(w, r, s, req, log)
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !authorized(r, token) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="edge admin"`)
			writeError(w, http.StatusUnauthorized, "the admin token is needed (Authorization: Bearer <token>)")
			return
		}
		mux.ServeHTTP(w, r)
	})
}

func authorized(r *http.Request, token string) bool {
	got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && token != "" && subtle.ConstantTimeCompare([]byte(got), []byte(token)) == 1
}

// prefetch streams the events as JSON lines, then the summary as the last
// line ({"summary": …}).
func prefetch(w http.ResponseWriter, r *http.Request, s *Service, req PrefetchRequest, log *slog.Logger) {
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	started := false
	start := func() {
		if !started {
			started = true
			w.Header().Set("Content-Type", "application/x-ndjson")
			w.WriteHeader(http.StatusOK)
		}
	}
	sum, err := s.Prefetch(r.Context(), req, func(ev Event) {
		start()
		// A caller that stops reading costs the prefetch a write timeout
		// per event, not its progress: the blobs go on filling.
		_ = rc.SetWriteDeadline(time.Now().Add(eventTimeout))
		_ = enc.Encode(ev)
		_ = rc.Flush()
	})
	if err != nil && !started {
		reply(w, log, nil, err)
		return
	}
	start()
	line := struct {
		Summary Summary `json:"summary"`
		Error   string  `json:"error,omitempty"`
	}{Summary: sum}
	if err != nil {
		line.Error = err.Error()
	}
	_ = enc.Encode(line)
	log.Info("prefetched", "images", sum.Images, "failed", sum.Failed, "fetched", sum.Fetched, "cached", sum.Cached, "bytes", sum.Bytes)
}

// eventTimeout bounds the write of one prefetch event.
const eventTimeout = 10 * time.Second

// maxRequest bounds a request body: names and lists of images.
const maxRequest = 1 << 20

func decode(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxRequest))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		writeError(w, http.StatusBadRequest, "request body: "+err.Error())
		return false
	}
	return true
}

func reply(w http.ResponseWriter, log *slog.Logger, v any, err error) {
	if err != nil {
		code := http.StatusInternalServerError
		switch {
		case errors.Is(err, ErrInvalid):
			code = http.StatusBadRequest
		case errors.Is(err, ErrDenied):
			code = http.StatusForbidden
		case errors.Is(err, ErrConflict):
			code = http.StatusConflict
		case errors.Is(err, ErrNotFound), errors.Is(err, oci.ErrNotFound):
			code = http.StatusNotFound
		default:
			log.Warn("admin request failed", "err", err)
		}
		writeError(w, code, err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(struct {
		Error string `json:"error"`
	}{msg})
}
