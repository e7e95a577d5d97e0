package localtier

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/oci"
	"github.com/edgeregistry/edge/internal/testkit"
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
	if info, err := s.AppendUpload(ctx, up.ID, chunk("hello ", 0), 0); err != nil || info.Size != 6 {
		t.Fatalf("first chunk: %+v %v", info, err)
	}
	if _, err := s.AppendUpload(ctx, up.ID, chunk("x", 3), 0); !errors.Is(err, ErrUploadOffset) {
		t.Fatalf("chunk at the wrong offset: %v", err)
	}
	if _, err := s.AppendUpload(ctx, up.ID, chunk("world", -1), 0); err != nil {
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
	if b := uploadContent(t, s, up.ID); string(b) != "hello world" {
		t.Fatalf("content %q", b)
	}
	for _, bad := range []string{"../../etc/passwd", "", strings.Repeat("g", 32)} {
		if _, err := s.Upload(ctx, bad); !errors.Is(err, ErrUploadUnknown) {
			t.Fatalf("Upload(%q) = %v", bad, err)
		}
	}
	// A failed commit leaves the session; a good one ends it.
	failed := errors.New("the global tier is down")
	if err := s.CommitUpload(ctx, up.ID, func(*os.File, UploadInfo) error { return failed }); !errors.Is(err, failed) {
		t.Fatalf("failed commit: %v", err)
	}
	if err := s.CommitUpload(ctx, up.ID, func(*os.File, UploadInfo) error { return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upload(ctx, up.ID); !errors.Is(err, ErrUploadUnknown) {
		t.Fatalf("committed session: %v", err)
	}
	other, _ := s.CreateUpload(ctx, "team", "team/app")
	if err := s.DeleteUpload(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Upload(ctx, other.ID); !errors.Is(err, ErrUploadUnknown) {
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
	if err := s.PutTag(ctx, "team", "team/app", "v1", oci.TagRecord{Digest: d}); err != nil {
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

// chunk is a chunk of declared length at offset.
func chunk(s string, offset int64) Chunk {
	return Chunk{Body: strings.NewReader(s), Offset: offset, Length: int64(len(s))}
}

// uploadContent reads the bytes of session id.
func uploadContent(t *testing.T, s *Store, id string) []byte {
	t.Helper()
	var b []byte
	err := s.CommitUpload(t.Context(), id, func(f *os.File, info UploadInfo) error {
		var err error
		b, err = io.ReadAll(f)
		if err == nil && int64(len(b)) != info.Size {
			err = fmt.Errorf("session says %d bytes, its file holds %d", info.Size, len(b))
		}
		if err != nil {
			return err
		}
		return errKeep
	})
	if err != errKeep {
		t.Fatal(err)
	}
	return b
}

// errKeep fails a commit on purpose, to read a session and keep it.
var errKeep = errors.New("keep the session")

// failingReader gives its bytes, then fails as a broken connection does.
type failingReader struct{ r io.Reader }

func (f *failingReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if err == io.EOF {
		return n, errors.New("connection reset by peer")
	}
	return n, err
}

// unread fails the test if it is read: a chunk refused for its declared
// length is refused before its body is read.
type unread struct{ t *testing.T }

func (u unread) Read([]byte) (int, error) {
	u.t.Error("the body of a refused chunk was read")
	return 0, io.EOF
}

func TestUploadLimit(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	ctx := t.Context()
	up, err := s.CreateUpload(ctx, "team", "team/app")
	if err != nil {
		t.Fatal(err)
	}
	const limit = 10
	if info, err := s.AppendUpload(ctx, up.ID, chunk("hello", 0), limit); err != nil || info.Size != 5 {
		t.Fatalf("first chunk: %+v %v", info, err)
	}
	for _, c := range []Chunk{
		{Body: unread{t}, Offset: 5, Length: 6},                                                  // declared: refused unread
		{Body: strings.NewReader("world!"), Offset: 5, Length: -1},                               // streamed: refused at the limit
		{Body: io.MultiReader(strings.NewReader("wor"), unread{t}), Offset: -1, Length: 4 << 30}, // declared larger than the limit
	} {
		info, err := s.AppendUpload(ctx, up.ID, c, limit)
		if !errors.Is(err, ErrUploadTooLarge) || info.Size != 5 {
			t.Fatalf("chunk over the limit: %+v %v", info, err)
		}
		if b := uploadContent(t, s, up.ID); string(b) != "hello" {
			t.Fatalf("after a refused chunk the upload holds %q", b)
		}
	}
	// Up to the limit exactly is fine, streamed or declared.
	if info, err := s.AppendUpload(ctx, up.ID, Chunk{Body: strings.NewReader("world"), Offset: -1, Length: -1}, limit); err != nil || info.Size != limit {
		t.Fatalf("chunk up to the limit: %+v %v", info, err)
	}
	if b := uploadContent(t, s, up.ID); string(b) != "helloworld" {
		t.Fatalf("upload holds %q", b)
	}
}

func TestUploadBrokenBodyKeepsWhatArrived(t *testing.T) {
	t.Parallel()
	s := openStore(t, t.TempDir(), Options{})
	ctx := t.Context()
	up, _ := s.CreateUpload(ctx, "team", "team/app")
	info, err := s.AppendUpload(ctx, up.ID, Chunk{Body: &failingReader{strings.NewReader("hel")}, Offset: 0, Length: 5}, 0)
	if err == nil || info.Size != 3 {
		t.Fatalf("broken body: %+v %v", info, err)
	}
	if info, err := s.AppendUpload(ctx, up.ID, chunk("lo", 3), 0); err != nil || info.Size != 5 {
		t.Fatalf("resumed: %+v %v", info, err)
	}
	if b := uploadContent(t, s, up.ID); string(b) != "hello" {
		t.Fatalf("upload holds %q", b)
	}
}

// A chunk that fills the disk is undone: the session keeps the bytes it
// had, other sessions keep theirs, and the upload goes on once there is
// room again. The disk is a real tmpfs that fills up.
func TestUploadDiskFull(t *testing.T) {
	root, child := testkit.Tmpfs(t, "uploads", 256<<10)
	if !child {
		return
	}
	s := openStore(t, root, Options{})
	ctx := t.Context()
	data := testkit.RandomBytes(t, 300<<10)
	up, err := s.CreateUpload(ctx, "team", "team/app")
	if err != nil {
		t.Fatal(err)
	}
	other, err := s.CreateUpload(ctx, "team", "team/other")
	if err != nil {
		t.Fatal(err)
	}
	filler := testkit.RandomBytes(t, 100<<10)
	if _, err := s.AppendUpload(ctx, other.ID, Chunk{Body: bytes.NewReader(filler), Offset: -1, Length: -1}, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendUpload(ctx, up.ID, Chunk{Body: bytes.NewReader(data[:64<<10]), Offset: 0, Length: -1}, 0); err != nil {
		t.Fatal(err)
	}
	info, err := s.AppendUpload(ctx, up.ID, Chunk{Body: bytes.NewReader(data[64<<10:]), Offset: 64 << 10, Length: -1}, 0)
	if !errors.Is(err, oci.ErrNoSpace) || !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("chunk on a full disk: %v", err)
	}
	if info.Size != 64<<10 {
		t.Fatalf("after a chunk that did not fit the session says %d bytes, want %d", info.Size, 64<<10)
	}
	if got, err := s.Upload(ctx, up.ID); err != nil || got.Size != 64<<10 {
		t.Fatalf("session after the full disk: %+v %v", got, err)
	}
	if b := uploadContent(t, s, up.ID); !bytes.Equal(b, data[:64<<10]) {
		t.Fatalf("the session holds %d bytes, not the %d it had", len(b), 64<<10)
	}
	if b := uploadContent(t, s, other.ID); !bytes.Equal(b, filler) {
		t.Fatal("another session's bytes changed")
	}
	// Room again: the upload resumes where it was.
	if err := s.DeleteUpload(ctx, other.ID); err != nil {
		t.Fatal(err)
	}
	if info, err := s.AppendUpload(ctx, up.ID, Chunk{Body: bytes.NewReader(data[64<<10 : 200<<10]), Offset: 64 << 10, Length: -1}, 0); err != nil || info.Size != 200<<10 {
		t.Fatalf("after freeing space: %+v %v", info, err)
	}
	if b := uploadContent(t, s, up.ID); !bytes.Equal(b, data[:200<<10]) {
		t.Fatal("resumed upload holds the wrong bytes")
	}
}
