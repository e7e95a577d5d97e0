package storjtier

import (
	"context"
	"fmt"
	"strings"

	"gopkg.in/yaml.v3"
)

// Config chooses and configures the backend of the global tier, in the
// shape of the operator's "global:" section.
type Config struct {
	Backend string      `yaml:"backend"` // storj | s3 | dir | none
	Storj   StorjConfig `yaml:"storj"`
	S3      S3Config    `yaml:"s3"`
	Dir     DirConfig   `yaml:"dir"`
	// Timeouts bound the calls of the storj and s3 backends.
	Timeouts Timeouts `yaml:"timeouts"`
	// ReadMemory is the node's budget for the parts that parallel ranged
	// reads of the storj and s3 backends hold (see Buffers); 0 means
	// DefaultReadMemory(), a quarter of the Go memory limit.
	ReadMemory ByteSize `yaml:"read_memory"`
}

// Check rejects settings that cannot work.
func (c Config) Check() error {
	if c.ReadMemory < 0 {
		return fmt.Errorf("storjtier: read_memory %d must not be negative", c.ReadMemory)
	}
	return c.Timeouts.check()
}

// Open returns the configured backend, or nil for "none" (no global
// tier). None of the backends contacts its store here. A backend that
// holds resources implements io.Closer. The storj and s3 backends get the
// timeouts of cfg and one read budget of cfg.ReadMemory, for every read
// of the node.
func Open(ctx context.Context, cfg Config) (Backend, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	switch cfg.Backend {
	case "none":
		return nil, nil
	case "dir":
		return NewDir(cfg.Dir)
	case "s3":
		cfg.S3.Timeouts, cfg.S3.Buffers = cfg.Timeouts, NewBuffers(int64(cfg.ReadMemory))
		return NewS3(cfg.S3)
	case "storj":
		cfg.Storj.Timeouts, cfg.Storj.Buffers = cfg.Timeouts, NewBuffers(int64(cfg.ReadMemory))
		return NewStorj(ctx, cfg.Storj)
	}
	return nil, fmt.Errorf("storjtier: backend %q: want storj, s3, dir or none", cfg.Backend)
}

// ByteSize is a byte count, written in YAML as a number or with a binary
// unit: "64MiB", "1GiB", "512KiB".
type ByteSize int64

// UnmarshalYAML reads a number of bytes or a size with KiB, MiB or GiB.
func (s *ByteSize) UnmarshalYAML(n *yaml.Node) error {
	v := strings.TrimSpace(n.Value)
	mult := int64(1)
	for i, unit := range []string{"KiB", "MiB", "GiB"} {
		if num, ok := strings.CutSuffix(v, unit); ok {
			v, mult = strings.TrimSpace(num), int64(1)<<(10*(i+1))
			break
		}
	}
	var k int64
	if _, err := fmt.Sscan(v, &k); err != nil || fmt.Sprint(k) != v || k < 0 {
		return fmt.Errorf("line %d: %q is not a size (like 64MiB)", n.Line, n.Value)
	}
	*s = ByteSize(k * mult)
	return nil
}

// MarshalYAML writes the size in bytes.
func (s ByteSize) MarshalYAML() (any, error) { return int64(s), nil }
