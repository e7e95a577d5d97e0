package upstream

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"

	"github.com/opencontainers/go-digest"
	v1 "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/edgeregistry/edge/internal/oci"
)

// ErrNoReferrersAPI: the origin does not serve the referrers API (it
// answered 404 or 405 to it, as registries without it do); the referrers
// tag schema is the way to its referrers. It matches ErrNotFound too.
var ErrNoReferrersAPI = fmt.Errorf("origin serves no referrers API: %w", ErrNotFound)

// maxReferrerPages bounds the pages of a referrers list followed through
// their Link headers.
const maxReferrerPages = 16

// Referrers lists the manifests of repo whose subject is d, from the
// origin's referrers API (GET /v2/<repo>/referrers/<digest>), every page
// of it, unfiltered. An origin without the API gives an error matching
// ErrNoReferrersAPI. Descriptors that are not well formed are left out.
func (c *Client) Referrers(ctx context.Context, repo string, d digest.Digest) ([]v1.Descriptor, error) {
	const op = "referrers"
	if err := c.checkName(op, repo); err != nil {
		return nil, err
	}
	if err := d.Validate(); err != nil {
		return nil, c.newError(op, repo, string(d), fmt.Errorf("%w digest: %v", ErrInvalid, err))
	}
	var out []v1.Descriptor
	path := "/v2/" + repo + "/referrers/" + d.String()
	for page := 0; path != "" && page < maxReferrerPages; page++ {
		var next string
		err := c.meta(ctx, func(ctx context.Context) error {
			resp, err := c.send(ctx, op, repo, d.String(), http.MethodGet, path,
				http.Header{"Accept": {v1.MediaTypeImageIndex}})
			if err != nil {
				return err
			}
			switch resp.StatusCode {
			case http.StatusOK:
			case http.StatusNotFound, http.StatusMethodNotAllowed:
				e := c.statusError(op, repo, d.String(), resp)
				e.Err = ErrNoReferrersAPI
				return e
			default:
				return c.statusError(op, repo, d.String(), resp)
			}
			next = nextPath(resp.Header.Values("Link"), "/v2/"+repo+"/referrers/")
			body, err := readCapped(resp.Body, oci.MaxManifestSize)
			if err != nil {
				return c.failure(ctx, op, repo, d.String(), err)
			}
			var idx v1.Index
			if err := json.Unmarshal(body, &idx); err != nil {
				return c.newError(op, repo, d.String(), fmt.Errorf("%w referrers list: %v", ErrInvalid, err))
			}
			out = append(out, WellFormed(idx.Manifests)...)
			return nil
		})
		if err != nil {
			// A later page that fails fails the whole list: a part of
			// it would pass for all of it.
			return nil, err
		}
		path = next
	}
	if out == nil {
		out = []v1.Descriptor{}
	}
	return out, nil
}

// WellFormed keeps the descriptors of a referrers list that name a valid
// digest, a media type and a size.
func WellFormed(descs []v1.Descriptor) []v1.Descriptor {
	out := make([]v1.Descriptor, 0, len(descs))
	for _, d := range descs {
		if d.Digest.Validate() == nil && d.MediaType != "" && d.Size >= 0 {
			out = append(out, d)
		}
	}
	return out
}

// nextPath reads the path (and query) of the rel="next" Link, when it
// stays under prefix on the same origin; "" otherwise.
func nextPath(links []string, prefix string) string {
	for _, h := range links {
		for l := range strings.SplitSeq(h, ",") {
			target, params, ok := strings.Cut(l, ";")
			if !ok || !strings.Contains(strings.ReplaceAll(params, " ", ""), `rel="next"`) {
				continue
			}
			t := strings.Trim(strings.TrimSpace(target), "<>")
			if strings.HasPrefix(t, prefix) {
				return t
			}
		}
	}
	return ""
}
