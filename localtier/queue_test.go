package localtier

import (
	"testing"
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
