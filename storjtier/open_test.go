package storjtier_test

import (
	"context"
	"io"
	"testing"

	"github.com/edgeregistry/edge/storjtier"
)

func TestOpen(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	b, err := storjtier.Open(ctx, storjtier.Config{Backend: "dir", Dir: storjtier.DirConfig{Path: t.TempDir()}})
	if _, ok := b.(*storjtier.Dir); !ok || err != nil {
		t.Errorf("Open(dir) = %T, %v", b, err)
	}
	if c, ok := b.(io.Closer); ok {
		_ = c.Close()
	}
	b, err = storjtier.Open(ctx, storjtier.Config{Backend: "s3", S3: storjtier.S3Config{Endpoint: "https://s3.example.com", Bucket: "registry"}})
	if _, ok := b.(*storjtier.S3); !ok || err != nil {
		t.Errorf("Open(s3) = %T, %v", b, err)
	}
	if b, err := storjtier.Open(ctx, storjtier.Config{Backend: "none"}); b != nil || err != nil {
		t.Errorf("Open(none) = %v, %v; want nil, nil", b, err)
	}
	for _, cfg := range []storjtier.Config{{}, {Backend: "ftp"}, {Backend: "storj"}, {Backend: "dir"}, {Backend: "s3"}} {
		if _, err := storjtier.Open(ctx, cfg); err == nil {
			t.Errorf("Open(%+v) = nil error", cfg)
		}
	}
}
