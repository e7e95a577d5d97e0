package localtier

import (
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestUploadSessions(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	ctx := t.Context()
	up, err := s.CreateUpload(ctx, "team", "team/app")
	if err != nil {
		t.Fatal(err)
	}
	if info, err := s.AppendUpload(ctx, up.ID, 0, strings.NewReader("hello ")); err != nil || info.Size != 6 {
		t.Fatalf("first chunk: %+v %v", info, err)
	}
	if _, err := s.AppendUpload(ctx, up.ID, 3, strings.NewReader("x")); !errors.Is(err, ErrUploadOffset) {
		t.Fatalf("chunk at the wrong offset: %v", err)
	}
	if _, err := s.AppendUpload(ctx, up.ID, -1, strings.NewReader("world")); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	// The session survives a restart and resumes where it was.
	s = openStore(t, dir, Options{})
	info, err := s.Upload(ctx, up.ID)
	if err != nil || info.Size != 11 || info.Route != "team" || info.Repo != "team/app" {
		t.Fatalf("after restart: %+v %v", info, err)
	}
	f, _, err := s.OpenUpload(ctx, up.ID)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(f)
	f.Close()
	if string(b) != "hello world" {
		t.Fatalf("content %q", b)
	}
	for _, bad := range []string{"../../etc/passwd", "", strings.Repeat("g", 32)} {
		if _, err := s.Upload(ctx, bad); !errors.Is(err, ErrUploadUnknown) {
			t.Fatalf("Upload(%q) = %v", bad, err)
		}
	}
	if err := s.DeleteUpload(ctx, up.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upload(ctx, up.ID); !errors.Is(err, ErrUploadUnknown) {
		t.Fatalf("deleted session: %v", err)
	}

	// Abandoned sessions are cleaned.
	old, _ := s.CreateUpload(ctx, "team", "team/app")
	if n, err := s.CleanUploads(ctx, -1); err != nil || n != 1 {
		t.Fatalf("CleanUploads = %d, %v", n, err)
	}
	if _, err := s.Upload(ctx, old.ID); !errors.Is(err, ErrUploadUnknown) {
		t.Fatal("an abandoned session survived the clean-up")
	}
}

func TestUnlinkAndDeleteTag(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	ctx := t.Context()
	d := digest.FromString("x")
	if err := s.Link(ctx, "team", "team/app", d); err != nil {
		t.Fatal(err)
	}
	if err := s.PutTag(ctx, "team", "team/app", "v1", TagRecord{Digest: d}); err != nil {
		t.Fatal(err)
	}
	if err := s.Unlink(ctx, "team", "team/app", d); err != nil {
		t.Fatal(err)
	}
	if ok, _ := s.Linked(ctx, "team", "team/app", d); ok {
		t.Fatal("still linked")
	}
	if err := s.DeleteTag(ctx, "team", "team/app", "v1"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetTag(ctx, "team", "team/app", "v1"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleted tag: %v", err)
	}
	if tags, _ := s.ListTags(ctx, "team", "team/app"); len(tags) != 0 {
		t.Fatalf("tags after delete: %v", tags)
	}
}
