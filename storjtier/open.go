package storjtier

import (
	"context"
	"fmt"
)

// Config chooses and configures the backend of the global tier, in the
// shape of the operator's "global:" section.
type Config struct {
	Backend string      `yaml:"backend"` // storj | s3 | dir | none
	Storj   StorjConfig `yaml:"storj"`
	S3      S3Config    `yaml:"s3"`
	Dir     DirConfig   `yaml:"dir"`
}

// Open returns the configured backend, or nil for "none" (no global
// tier). None of the backends contacts its store here. A backend that
// holds resources implements io.Closer.
func Open(ctx context.Context, cfg Config) (Backend, error) {
	switch cfg.Backend {
	case "none":
		return nil, nil
	case "dir":
		return NewDir(cfg.Dir)
	case "s3":
		return NewS3(cfg.S3)
	case "storj":
		return NewStorj(ctx, cfg.Storj)
	}
	return nil, fmt.Errorf("storjtier: backend %q: want storj, s3, dir or none", cfg.Backend)
}
