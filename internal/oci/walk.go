package oci

import "github.com/opencontainers/go-digest"

// Walk is what the node reads of a manifest or an index to walk what it
// holds: the config and layers of an image, or the child manifests of an
// index (a prefetch, a prewarm).
type Walk struct {
	Config    *Ref  `json:"config"`
	Layers    []Ref `json:"layers"`
	Manifests []Ref `json:"manifests"`
}

// Ref is a descriptor as a walk reads it.
type Ref struct {
	Digest   digest.Digest `json:"digest"`
	Size     int64         `json:"size"`
	URLs     []string      `json:"urls"`
	Platform *struct {
		OS           string `json:"os"`
		Architecture string `json:"architecture"`
		Variant      string `json:"variant"`
	} `json:"platform"`
}

// Blobs are the config and the layers, except layers that live elsewhere
// (foreign layers, which clients fetch from their URLs).
func (w Walk) Blobs() []Ref {
	var out []Ref
	if w.Config != nil {
		out = append(out, *w.Config)
	}
	for _, l := range w.Layers {
		if len(l.URLs) == 0 {
			out = append(out, l)
		}
	}
	return out
}
