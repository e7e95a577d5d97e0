package main

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/storjtier"
)

// edge gc --dry-run names what edge gc then deletes: here, a blob nothing
// has read for longer than the retention.
func TestGCCommand(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	path := writeConfig(t, dir, "http://127.0.0.1:1")
	b, err := storjtier.NewDir(storjtier.DirConfig{Path: filepath.Join(dir, "global")})
	if err != nil {
		t.Fatal(err)
	}
	tier := storjtier.New(b)
	ctx := context.Background()
	for _, s := range []string{"old", "new"} {
		data := []byte(s)
		if err := tier.PutBlob(ctx, digest.FromBytes(data), bytes.NewReader(data), int64(len(data))); err != nil {
			t.Fatal(err)
		}
		if s == "old" {
			old := time.Now().Add(-90 * 24 * time.Hour)
			err := filepath.WalkDir(filepath.Join(dir, "global"), func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				return os.Chtimes(p, old, old)
			})
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	oldD := digest.FromBytes([]byte("old"))
	var out bytes.Buffer
	if err := run([]string{"gc", "--dry-run", "--config", path}, &out, &out); err != nil {
		t.Fatalf("%v\n%s", err, out.String())
	}
	if !strings.Contains(out.String(), "would delete blob "+oldD.String()) || !strings.Contains(out.String(), "would delete 1 objects") {
		t.Fatalf("dry run:\n%s", out.String())
	}
	if _, err := tier.StatBlob(ctx, oldD); err != nil {
		t.Fatalf("the dry run deleted: %v", err)
	}
	out.Reset()
	if err := run([]string{"gc", "--config", path}, &out, &out); err != nil || !strings.Contains(out.String(), "deleted 1 objects, 3 B of content: 1 blob") {
		t.Fatalf("gc: %v\n%s", err, out.String())
	}
	if _, err := tier.StatBlob(ctx, oldD); err == nil {
		t.Fatal("the old blob is still there")
	}
	if _, err := tier.StatBlob(ctx, digest.FromBytes([]byte("new"))); err != nil {
		t.Fatalf("the new blob went: %v", err)
	}
}
