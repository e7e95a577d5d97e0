package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/internal/oci"
)

// Descriptor describes a manifest as the origin served it.
type Descriptor struct {
	MediaType string
	Digest    digest.Digest
	Size      int64
}

// Media types of the Docker v2 schema.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// manifestAccept is what a Client accepts for manifests.
var manifestAccept = strings.Join([]string{
	v1.MediaTypeImageIndex,
	v1.MediaTypeImageManifest,
	MediaTypeDockerManifestList,
	MediaTypeDockerManifest,
}, ", ")

// meta runs fn for a metadata call under MetaTimeout with retries.
func (c *Client) meta(ctx context.Context, fn func(ctx context.Context) error) error {
	deadline := c.clock.Now().Add(c.cfg.MetaTimeout)
	ctx, cancel := c.timeout(ctx, c.cfg.MetaTimeout, errMetaTimeout)
	defer cancel()
	return c.retry(ctx, deadline, func() error { return fn(ctx) })
}

// HeadManifest asks the origin for the descriptor of repo:ref (a tag or a
// digest) without the body. Origins that leave out Docker-Content-Digest on
// HEAD are asked with a GET.
func (c *Client) HeadManifest(ctx context.Context, repo, ref string) (Descriptor, error) {
	const op = "head_manifest"
	refDigest, err := c.checkRef(op, repo, ref)
	if err != nil {
		return Descriptor{}, err
	}
	var desc Descriptor
	err = c.meta(ctx, func(ctx context.Context) error {
		resp, err := c.send(ctx, op, repo, ref, http.MethodHead, "/v2/"+repo+"/manifests/"+ref,
			http.Header{"Accept": {manifestAccept}})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return c.statusError(op, repo, ref, resp)
		}
		drain(resp.Body)
		desc = Descriptor{MediaType: mediaType(resp.Header.Get("Content-Type")), Size: resp.ContentLength}
		if d, err := digest.Parse(resp.Header.Get("Docker-Content-Digest")); err == nil {
			desc.Digest = d
		} else {
			desc.Digest = refDigest
		}
		if refDigest != "" && desc.Digest != refDigest {
			return c.newError(op, repo, ref, fmt.Errorf("%w: origin says %s", ErrDigestMismatch, desc.Digest))
		}
		return nil
	})
	if err != nil {
		return Descriptor{}, err
	}
	if desc.Digest == "" || desc.MediaType == "" || desc.Size < 0 {
		desc, _, err = c.GetManifest(ctx, repo, ref)
	}
	return desc, err
}

// GetManifest fetches repo:ref (a tag or a digest). The body is capped at
// oci.MaxManifestSize. The digest is the origin's Docker-Content-Digest, checked
// against the body; if ref is a digest, the body must match it.
func (c *Client) GetManifest(ctx context.Context, repo, ref string) (Descriptor, []byte, error) {
	const op = "get_manifest"
	refDigest, err := c.checkRef(op, repo, ref)
	if err != nil {
		return Descriptor{}, nil, err
	}
	var (
		desc Descriptor
		body []byte
	)
	if err := c.quotaTurn(ctx, op, repo, ref); err != nil {
		return Descriptor{}, nil, err
	}
	err = c.meta(ctx, func(ctx context.Context) error {
		resp, err := c.send(ctx, op, repo, ref, http.MethodGet, "/v2/"+repo+"/manifests/"+ref,
			http.Header{"Accept": {manifestAccept}})
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return c.statusError(op, repo, ref, resp)
		}
		body, err = readCapped(resp.Body, oci.MaxManifestSize)
		if err != nil {
			return c.failure(ctx, op, repo, ref, err)
		}
		want := refDigest
		if want == "" {
			// A bad header is the origin's problem only if it claims a digest.
			if hd := resp.Header.Get("Docker-Content-Digest"); hd != "" {
				if want, err = digest.Parse(hd); err != nil {
					return c.newError(op, repo, ref, fmt.Errorf("%w Docker-Content-Digest %q", ErrInvalid, hd))
				}
			}
		}
		got := digest.Canonical.FromBytes(body)
		if want != "" {
			if !want.Algorithm().Available() {
				return c.newError(op, repo, ref, fmt.Errorf("%w: unsupported digest algorithm %s", ErrInvalid, want.Algorithm()))
			}
			if got = want.Algorithm().FromBytes(body); got != want {
				return c.newError(op, repo, ref, fmt.Errorf("%w: body is %s, want %s", ErrDigestMismatch, got, want))
			}
		}
		desc = Descriptor{MediaType: manifestMediaType(resp.Header.Get("Content-Type"), body), Digest: got, Size: int64(len(body))}
		return nil
	})
	if err != nil {
		return Descriptor{}, nil, err
	}
	return desc, body, nil
}

// Tags lists up to n tags of repo after last (n <= 0: the origin's default
// page). next is the `last` of the following page, or "" at the end.
func (c *Client) Tags(ctx context.Context, repo string, n int, last string) (tags []string, next string, err error) {
	const op = "tags"
	if err := c.checkName(op, repo); err != nil {
		return nil, "", err
	}
	q := url.Values{}
	if n > 0 {
		q.Set("n", strconv.Itoa(n))
	}
	if last != "" {
		q.Set("last", last)
	}
	path := "/v2/" + repo + "/tags/list"
	if len(q) > 0 {
		path += "?" + q.Encode()
	}
	err = c.meta(ctx, func(ctx context.Context) error {
		resp, err := c.send(ctx, op, repo, "", http.MethodGet, path, nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return c.statusError(op, repo, "", resp)
		}
		body, err := readCapped(resp.Body, oci.MaxManifestSize)
		if err != nil {
			return c.failure(ctx, op, repo, "", err)
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		if err := json.Unmarshal(body, &list); err != nil {
			return c.newError(op, repo, "", fmt.Errorf("%w tag list: %v", ErrInvalid, err))
		}
		tags, next = list.Tags, nextLast(resp.Header.Values("Link"))
		return nil
	})
	if err != nil {
		return nil, "", err
	}
	return tags, next, nil
}

// nextLast reads the `last` parameter of the rel="next" Link.
func nextLast(links []string) string {
	for _, h := range links {
		for l := range strings.SplitSeq(h, ",") {
			target, params, ok := strings.Cut(l, ";")
			if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				continue
			}
			u, err := url.Parse(strings.Trim(strings.TrimSpace(target), "<>"))
			if err == nil {
				return u.Query().Get("last")
			}
		}
	}
	return ""
}

// readCapped reads a body of at most max bytes and closes it.
func readCapped(body io.ReadCloser, max int64) ([]byte, error) {
	defer body.Close()
	b, err := io.ReadAll(io.LimitReader(body, max+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > max {
		return nil, fmt.Errorf("%w: over %d bytes", ErrTooLarge, max)
	}
	return b, nil
}

// mediaType strips parameters from a Content-Type.
func mediaType(ct string) string {
	mt, _, _ := strings.Cut(ct, ";")
	return strings.TrimSpace(mt)
}

// manifestMediaType prefers the mediaType the manifest declares over a
// generic Content-Type.
func manifestMediaType(ct string, body []byte) string {
	mt := mediaType(ct)
	switch mt {
	case "", "application/json", "application/octet-stream", "text/plain":
		var m struct {
			MediaType string          `json:"mediaType"`
			Manifests json.RawMessage `json:"manifests"`
		}
		if json.Unmarshal(body, &m) == nil {
			switch {
			case m.MediaType != "":
				return m.MediaType
			case m.Manifests != nil:
				return v1.MediaTypeImageIndex
			default:
				return v1.MediaTypeImageManifest
			}
		}
	}
	return mt
}
