package registry

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"

	"github.com/distribution/distribution/v3/registry/api/errcode"
	"github.com/opencontainers/go-digest"
)

// accepts reports whether the request's Accept headers allow mediaType. A
// request without Accept takes anything.
func accepts(r *http.Request, mediaType string) bool {
	values := r.Header.Values("Accept")
	if len(values) == 0 {
		return true
	}
	for _, v := range values {
		for part := range strings.SplitSeq(v, ",") {
			mt, _, _ := strings.Cut(part, ";")
			mt = strings.TrimSpace(mt)
			if mt == mediaType || mt == "*/*" {
				return true
			}
		}
	}
	return false
}

// platformChild picks, from an index or manifest list, the linux/amd64
// manifest of a media type the request accepts: what a registry answers a
// client that cannot read indexes.
func platformChild(body []byte, r *http.Request) (digest.Digest, bool) {
	var idx struct {
		Manifests []struct {
			MediaType string        `json:"mediaType"`
			Digest    digest.Digest `json:"digest"`
			Platform  *struct {
				OS           string `json:"os"`
				Architecture string `json:"architecture"`
			} `json:"platform"`
		} `json:"manifests"`
	}
	if json.Unmarshal(body, &idx) != nil {
		return "", false
	}
	for _, m := range idx.Manifests {
		if m.Platform != nil && m.Platform.OS == "linux" && m.Platform.Architecture == "amd64" &&
			accepts(r, m.MediaType) && m.Digest.Validate() == nil {
			return m.Digest, true
		}
	}
	return "", false
}

// byteRange is one range of a Range header: start-end inclusive; end -1
// means to the end; start -1 means the last end bytes.
type byteRange struct{ start, end int64 }

// parseRange parses a Range header value of unit bytes.
func parseRange(v string) ([]byteRange, bool) {
	spec, ok := strings.CutPrefix(v, "bytes=")
	if !ok {
		return nil, false
	}
	var out []byteRange
	for _, part := range strings.Split(spec, ",") {
		a, b, ok := strings.Cut(strings.TrimSpace(part), "-")
		if !ok {
			return nil, false
		}
		var br byteRange
		var err error
		switch {
		case a == "":
			if br.end, err = strconv.ParseInt(b, 10, 64); err != nil || br.end <= 0 {
				return nil, false
			}
			br.start = -1
		default:
			if br.start, err = strconv.ParseInt(a, 10, 64); err != nil || br.start < 0 {
				return nil, false
			}
			br.end = -1
			if b != "" {
				if br.end, err = strconv.ParseInt(b, 10, 64); err != nil || br.end < br.start {
					return nil, false
				}
			}
		}
		out = append(out, br)
	}
	return out, len(out) > 0
}

// checkRange rejects a Range header that is not a valid bytes range.
func checkRange(v string) error {
	if v == "" {
		return nil
	}
	if _, ok := parseRange(v); !ok {
		return newError(errcode.ErrorCodeRangeInvalid, "invalid Range header", v)
	}
	return nil
}

// satisfiable reports whether a valid Range header selects any byte of a
// blob of size bytes.
func satisfiable(v string, size int64) bool {
	ranges, ok := parseRange(v)
	if !ok {
		return false
	}
	for _, br := range ranges {
		if br.start < 0 || br.start < size {
			return size > 0
		}
	}
	return false
}
