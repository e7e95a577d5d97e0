package localtier

import (
	"errors"
	"testing"

	"github.com/opencontainers/go-digest"
)

func TestQueueIsDurableAndIdempotent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	ctx := t.Context()
	for _, item := range []string{"2m/sha256:bb", "1b/sha256:aa", "3t/route/repo:tag", "1b/sha256:aa"} {
		if err := s.Enqueue(ctx, item); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := s.QueueLen(); err != nil || n != 3 {
		t.Fatalf("QueueLen = %d, %v; want 3", n, err)
	}
	items, err := s.Queued(ctx, "", 10)
	if err != nil || len(items) != 3 || items[0].Item != "1b/sha256:aa" || items[2].Item != "3t/route/repo:tag" {
		t.Fatalf("Queued = %+v, %v", items, err)
	}
	if page, _ := s.Queued(ctx, items[0].Item, 1); len(page) != 1 || page[0].Item != "2m/sha256:bb" {
		t.Fatalf("Queued after the first = %+v", page)
	}
	if err := s.Dequeue(ctx, "2m/sha256:bb"); err != nil {
		t.Fatal(err)
	}
	if err := s.Dequeue(ctx, "not/queued"); err != nil {
		t.Fatalf("dequeue of a missing item: %v", err)
	}
	if err := s.Enqueue(ctx, "bad\x00item"); err == nil {
		t.Fatal("an item with NUL was queued")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir, Options{})
	items, err = s.Queued(ctx, "", 10)
	if err != nil || len(items) != 2 || items[0].Item != "1b/sha256:aa" || items[1].Item != "3t/route/repo:tag" {
		t.Fatalf("after reopening: %+v, %v", items, err)
	}
	if n, _ := s.QueueLen(); n != 2 {
		t.Fatalf("QueueLen after reopening = %d", n)
	}
}

func TestBuryMovesAnItemToTheDeadLetters(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	ctx := t.Context()
	for _, item := range []string{"1b/sha256:aa", "3t/route/repo:tag"} {
		if err := s.Enqueue(ctx, item); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Bury(ctx, "3t/route/repo:tag", "invalid key"); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openStore(t, dir, Options{})
	items, err := s.Queued(ctx, "", 10)
	if err != nil || len(items) != 1 || items[0].Item != "1b/sha256:aa" {
		t.Fatalf("queue after a burial and a restart = %+v, %v", items, err)
	}
	if n, _ := s.QueueLen(); n != 1 {
		t.Fatalf("QueueLen = %d, want 1", n)
	}
	dead, err := s.DeadLetters(ctx, 10)
	if err != nil || len(dead) != 1 || dead[0].Item != "3t/route/repo:tag" || dead[0].Reason != "invalid key" || dead[0].Buried.IsZero() {
		t.Fatalf("dead letters = %+v, %v", dead, err)
	}
	if n, err := s.DeadLetterLen(); n != 1 || err != nil {
		t.Fatalf("DeadLetterLen = %d, %v", n, err)
	}
}

// A fill's blob, its repository link and its write-behind item are one
// index write: there is no moment at which a crash leaves the blob without
// the item that copies it to the global tier.
func TestCommitFillRecordsTheLinkAndTheQueueItemWithTheBlob(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	s := openStore(t, dir, Options{})
	ctx := t.Context()
	content := []byte("a layer fetched from the origin")
	d := digest.FromBytes(content)
	item := "1b/" + string(d)
	commit := func(rec FillRecord) error {
		w, err := s.NewBlobWriter(d)
		if err != nil {
			t.Fatal(err)
		}
		defer w.Abort()
		if _, err := w.Write(content); err != nil {
			t.Fatal(err)
		}
		return w.CommitFill(int64(len(content)), "", rec)
	}

	// A record that cannot be written stops the commit before anything is.
	if err := commit(FillRecord{Route: "hub", Repo: "library/x", Queue: "bad\x00item"}); err == nil {
		t.Fatal("a fill with a bad queue item committed")
	}
	if _, err := s.StatBlob(ctx, d); !errors.Is(err, ErrNotFound) {
		t.Fatalf("blob after a refused commit: %v", err)
	}

	if err := commit(FillRecord{Route: "hub", Repo: "library/x", Queue: item}); err != nil {
		t.Fatal(err)
	}
	// The blob is here already: a second fill records its own repository,
	// and the item stays queued once.
	if err := commit(FillRecord{Route: "hub", Repo: "library/y", Queue: item}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	s = openStore(t, dir, Options{})
	if _, err := s.StatBlob(ctx, d); err != nil {
		t.Fatalf("blob after reopening: %v", err)
	}
	for _, repo := range []string{"library/x", "library/y"} {
		if ok, err := s.Linked(ctx, "hub", repo, d); !ok || err != nil {
			t.Fatalf("link to %s after reopening: %v, %v", repo, ok, err)
		}
	}
	items, err := s.Queued(ctx, "", 10)
	if n, _ := s.QueueLen(); err != nil || len(items) != 1 || items[0].Item != item || n != 1 {
		t.Fatalf("queue after reopening: %+v (len %d), %v", items, n, err)
	}
}
