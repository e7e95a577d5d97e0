package registry

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/auth"
	"github.com/edgeregistry/edge/cache"
	"github.com/edgeregistry/edge/hosted"
	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/policy"
)

// location is a path on this node for the client's repository name,
// keeping containerd's ?ns= so that the next request routes the same way.
func location(req *request, suffix string) string {
	loc := "/v2/" + req.name + suffix
	if ns := nsParam(req.client.URL.RawQuery); ns != "" {
		loc += "?ns=" + url.QueryEscape(ns)
	}
	return loc
}

// routeAllows refuses what the request's route does not allow, before
// anyone's credentials are looked at: a push to a pull-through mirror is
// UNSUPPORTED for everyone.
func (s *Server) routeAllows(req *request, need policy.Capability) error {
	tag := ""
	if req.op == "manifest" && !strings.Contains(req.ref, ":") {
		tag = req.ref
	}
	if !req.route.Permits(req.repo, tag) {
		return &apiError{Status: http.StatusForbidden, Code: errcode.ErrorCodeDenied,
			Message: fmt.Sprintf("route %s does not serve %s by its allow and deny lists", req.route.Name, req.name)}
	}
	if req.route.Caps.Has(need) {
		return nil
	}
	msg := fmt.Sprintf("route %s does not allow %s", req.route.Name, need)
	if !req.route.Hosted {
		msg += ": it is a read-only pull-through mirror; push to a hosted route"
	}
	return &apiError{Status: http.StatusMethodNotAllowed, Code: errcode.ErrorCodeUnsupported, Message: msg}
}

// upload serves /v2/<name>/blobs/uploads/[<id>].
func (s *Server) upload(w http.ResponseWriter, req *request) error {
	r := req.client
	if req.ref == "" {
		if r.Method != http.MethodPost {
			return newError(errcode.ErrorCodeUnsupported, "start an upload with POST", r.Method)
		}
		return s.startUpload(w, req)
	}
	id := req.ref
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		up, err := s.push.UploadStatus(r.Context(), req.route, req.repo, id)
		if err != nil {
			return err
		}
		uploadHeaders(w, req, up)
		w.WriteHeader(http.StatusNoContent)
		return nil
	case http.MethodPatch:
		offset, err := chunkOffset(r)
		if err != nil {
			return err
		}
		up, err := s.push.AppendUpload(r.Context(), req.route, req.repo, id, chunk(r, offset))
		if err != nil {
			return err
		}
		uploadHeaders(w, req, up)
		w.WriteHeader(http.StatusAccepted)
		return nil
	case http.MethodPut:
		return s.finishUpload(w, req, id)
	case http.MethodDelete:
		if err := s.push.CancelUpload(r.Context(), req.route, req.repo, id); err != nil {
			return err
		}
		w.WriteHeader(http.StatusNoContent)
		return nil
	}
	return newError(errcode.ErrorCodeUnsupported, "method not allowed on an upload", r.Method)
}

func (s *Server) startUpload(w http.ResponseWriter, req *request) error {
	r := req.client
	q := r.URL.Query()
	if mount := q.Get("mount"); mount != "" {
		d, err := parseDigest(mount)
		if err != nil {
			return err
		}
		mounted, err := s.mountFrom(req, q.Get("from"), d)
		if err != nil {
			return err
		}
		if mounted {
			blobCreated(w, req, d)
			return nil
		}
		// A mount that cannot be done becomes an upload.
	}
	if dv := q.Get("digest"); dv != "" {
		return s.monolithicUpload(w, req, dv)
	}
	up, err := s.push.StartUpload(r.Context(), req.route, req.repo)
	if err != nil {
		return err
	}
	uploadHeaders(w, req, up)
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// monolithicUpload takes a whole blob in one POST. The client never learns
// the session it goes through, so a failed one is removed at once.
func (s *Server) monolithicUpload(w http.ResponseWriter, req *request, dv string) error {
	r := req.client
	d, err := parseDigest(dv)
	if err != nil {
		return err
	}
	if max := s.push.MaxUploadSize(); r.ContentLength > max {
		return tooLarge(r.ContentLength, max)
	}
	up, err := s.push.StartUpload(r.Context(), req.route, req.repo)
	if err != nil {
		return err
	}
	_, err = s.push.AppendUpload(r.Context(), req.route, req.repo, up.ID, chunk(r, 0))
	if err == nil {
		err = s.push.FinishUpload(r.Context(), req.route, req.repo, up.ID, d)
	}
	if err != nil {
		if cerr := s.push.CancelUpload(context.WithoutCancel(r.Context()), req.route, req.repo, up.ID); cerr != nil {
			s.log.Warn("cannot remove a failed monolithic upload", "id", up.ID, "err", cerr)
		}
		return err
	}
	blobCreated(w, req, d)
	return nil
}

// chunk is the body of r, a chunk of an upload starting at offset.
func chunk(r *http.Request, offset int64) hosted.Chunk {
	return hosted.Chunk{Body: r.Body, Offset: offset, Length: r.ContentLength}
}

// mountFrom links d from repository from, or, without one, from any
// repository of the route that holds d, that the route's lists let through
// and that the client may pull: a digest alone opens nothing the client
// could not read already.
func (s *Server) mountFrom(req *request, from string, d digest.Digest) (bool, error) {
	if from != "" {
		return s.mount(req, from, d)
	}
	holders, err := s.push.Holders(req.client.Context(), req.route, d)
	if err != nil {
		return false, nil // no mount, an upload instead
	}
	for _, h := range holders {
		if req.route.Permits(h, "") && s.authorize(req.client, req.route, h, policy.CapPull) == nil {
			return s.push.Mount(req.client.Context(), req.route, req.repo, h, d)
		}
	}
	return false, nil
}

// mount links d from another repository of the same route, if the client
// may pull from it.
func (s *Server) mount(req *request, from string, d digest.Digest) (bool, error) {
	if !validName(from) {
		return false, newError(errcode.ErrorCodeNameInvalid, "invalid repository name in from", from)
	}
	rt, fromRepo, err := s.router.Resolve(nsParam(req.client.URL.RawQuery), from)
	if err != nil || rt != req.route || !rt.Permits(fromRepo, "") {
		return false, nil // the route's lists keep what they refuse out of mounts too
	}
	if err := s.authorize(req.client, rt, fromRepo, policy.CapPull); err != nil {
		if errors.Is(err, auth.ErrInsufficientScope) {
			// The client may pull the source, but its token was issued
			// for the destination alone: a 401 that asks for both gets it
			// the token for the mount, as distribution's registry does.
			req.also = auth.Scope(s.scopeName(rt, from, fromRepo), policy.CapPull)
			return false, err
		}
		return false, nil
	}
	return s.push.Mount(req.client.Context(), req.route, req.repo, fromRepo, d)
}

func (s *Server) finishUpload(w http.ResponseWriter, req *request, id string) error {
	r := req.client
	dv := r.URL.Query().Get("digest")
	if dv == "" {
		return newError(errcode.ErrorCodeDigestInvalid, "finishing an upload needs ?digest=", nil)
	}
	d, err := parseDigest(dv)
	if err != nil {
		return err
	}
	if r.ContentLength != 0 {
		offset, err := chunkOffset(r)
		if err != nil {
			return err
		}
		if _, err := s.push.AppendUpload(r.Context(), req.route, req.repo, id, chunk(r, offset)); err != nil {
			return err
		}
	}
	if err := s.push.FinishUpload(r.Context(), req.route, req.repo, id, d); err != nil {
		return err
	}
	blobCreated(w, req, d)
	return nil
}

func blobCreated(w http.ResponseWriter, req *request, d digest.Digest) {
	h := w.Header()
	h.Set("Location", location(req, "/blobs/"+d.String()))
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
}

func uploadHeaders(w http.ResponseWriter, req *request, up hosted.Upload) {
	h := w.Header()
	h.Set("Location", location(req, "/blobs/uploads/"+up.ID))
	h.Set("Docker-Upload-UUID", up.ID)
	h.Set("Range", fmt.Sprintf("0-%d", max(up.Size-1, 0)))
	h.Set("Content-Length", "0")
}

// chunkOffset reads where a chunk starts from Content-Range ("start-end");
// -1 when the header is absent.
func chunkOffset(r *http.Request) (int64, error) {
	v := r.Header.Get("Content-Range")
	if v == "" {
		return -1, nil
	}
	v = strings.TrimPrefix(v, "bytes ")
	a, b, ok := strings.Cut(v, "-")
	start, err1 := strconv.ParseInt(a, 10, 64)
	end, err2 := strconv.ParseInt(b, 10, 64)
	if !ok || err1 != nil || err2 != nil || start < 0 || end < start-1 {
		return 0, &apiError{Status: http.StatusRequestedRangeNotSatisfiable, Code: errcode.ErrorCodeRangeInvalid,
			Message: "invalid Content-Range", Detail: v}
	}
	if r.ContentLength >= 0 && end-start+1 != r.ContentLength {
		return 0, &apiError{Status: http.StatusRequestedRangeNotSatisfiable, Code: errcode.ErrorCodeRangeInvalid,
			Message: "Content-Range does not match Content-Length", Detail: v}
	}
	return start, nil
}

// putManifest serves PUT /v2/<name>/manifests/<ref>.
func (s *Server) putManifest(w http.ResponseWriter, req *request) error {
	r := req.client
	if err := checkRef(req.ref); err != nil {
		return err
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, oci.MaxManifestSize+1))
	if err != nil {
		return err
	}
	if len(body) > oci.MaxManifestSize {
		return &apiError{Status: http.StatusRequestEntityTooLarge, Code: errcode.ErrorCodeManifestInvalid,
			Message: fmt.Sprintf("manifest larger than %d bytes", oci.MaxManifestSize)}
	}
	ct, _, _ := strings.Cut(r.Header.Get("Content-Type"), ";")
	d, subject, err := s.push.PutManifest(r.Context(), req.route, req.repo, req.ref, strings.TrimSpace(ct), body)
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Location", location(req, "/manifests/"+d.String()))
	h.Set("Docker-Content-Digest", d.String())
	if subject != nil {
		h.Set("OCI-Subject", subject.Digest.String())
	}
	h.Set("Content-Length", "0")
	w.WriteHeader(http.StatusCreated)
	return nil
}

// checkRef validates a manifest reference: a tag or a digest.
func checkRef(ref string) error {
	if strings.Contains(ref, ":") {
		_, err := parseDigest(ref)
		return err
	}
	if !validTag(ref) {
		return newError(errcode.ErrorCodeTagInvalid, "invalid tag", ref)
	}
	return nil
}

// deleteContent serves DELETE of manifests, tags and blobs.
func (s *Server) deleteContent(w http.ResponseWriter, req *request) error {
	r := req.client
	var err error
	switch req.op {
	case "manifest":
		if err = checkRef(req.ref); err != nil {
			return err
		}
		if d, perr := digest.Parse(req.ref); perr == nil {
			err = s.push.DeleteManifest(r.Context(), req.route, req.repo, d)
		} else {
			err = s.push.DeleteTag(r.Context(), req.route, req.repo, req.ref)
		}
	case "blob":
		var d digest.Digest
		if d, err = parseDigest(req.ref); err != nil {
			return err
		}
		err = s.push.DeleteBlob(r.Context(), req.route, req.repo, d)
	default:
		return newError(errcode.ErrorCodeUnsupported, "cannot delete this", req.op)
	}
	if err != nil {
		return err
	}
	w.Header().Set("Content-Length", "0")
	w.WriteHeader(http.StatusAccepted)
	return nil
}

// referrers serves GET /v2/<name>/referrers/<digest>: a hosted route's
// from its record, a pull-through route's from its origin (through the
// engine, which keeps them). No referrers is an empty index, never a 404.
func (s *Server) referrers(w http.ResponseWriter, req *request) error {
	r := req.client
	d, err := parseDigest(req.ref)
	if err != nil {
		return err
	}
	at := r.URL.Query().Get("artifactType")
	var (
		descs []ocispec.Descriptor
		stale bool
	)
	if req.route.Hosted {
		descs, err = s.push.Referrers(r.Context(), req.route, req.repo, d, at)
	} else {
		var refs cache.Referrers
		refs, err = s.pull.Referrers(cache.WithClient(r.Context(), s.client(r)), req.route, req.repo, d, at)
		descs, stale = refs.Manifests, refs.Stale
	}
	if err != nil && !errors.Is(err, cache.ErrNotFound) {
		return err
	}
	if descs == nil {
		descs = []ocispec.Descriptor{}
	}
	body, err := json.Marshal(ocispec.Index{
		Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: descs,
	})
	if err != nil {
		return err
	}
	h := w.Header()
	h.Set("Content-Type", ocispec.MediaTypeImageIndex)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if at != "" {
		h.Set("OCI-Filters-Applied", "artifactType")
	}
	if stale {
		h.Set("Warning", `110 - "Response is Stale"`)
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		_, _ = w.Write(body)
	}
	return nil
}
