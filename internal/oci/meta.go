package oci

import (
	"time"

	"github.com/opencontainers/go-digest"
)

// MaxManifestSize is the largest manifest the node takes, stores or reads,
// as in the distribution registry (4 MiB).
const MaxManifestSize = 4 << 20

// TagRecord is what a tier knows about a tag: the manifest it points to
// and when that was learned. The global tier stores it as JSON.
type TagRecord struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"media_type,omitempty"`
	Size      int64         `json:"size"`
	FetchedAt time.Time     `json:"fetched_at"`
	Source    string        `json:"-"` // the origin or tier the record came from, on this node
	Region    string        `json:"region,omitempty"`
}
