package fleet

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/storjtier"
)

// A hint written by one member is read by the others, once; its writer
// does not read its own. Hints not signed with the fleet secret, altered,
// or under another key are skipped, and hints past an hour are removed.
func TestHintsReachTheOtherMembers(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	b := dirBackend(t)
	f := fleetOn(t, b, clock, "eu/a", "us/b")
	a, us := f["eu/a"], f["us/b"]
	ctx := t.Context()
	d := digest.FromString("v2")
	if err := a.PutHint(ctx, "hub", "library/app", "stable", d); err != nil {
		t.Fatal(err)
	}
	hs, err := us.Hints(ctx)
	if err != nil || len(hs) != 1 {
		t.Fatalf("Hints: %+v, %v", hs, err)
	}
	if h := hs[0]; h.Route != "hub" || h.Repo != "library/app" || h.Tag != "stable" || h.Digest != d || h.Region != "eu" || h.By != "a" {
		t.Fatalf("hint %+v", h)
	}
	if own, _ := a.Hints(ctx); len(own) != 0 {
		t.Fatalf("a reads its own hint: %+v", own)
	}
	if again, _ := us.Hints(ctx); len(again) != 0 {
		t.Fatalf("the same hint read twice: %+v", again)
	}

	// Forged: unsigned; a signed hint altered (another repository, another
	// digest) under its own key; and a signed hint copied under another key.
	put := func(key string, body []byte) {
		if err := b.Put(ctx, key, bytes.NewReader(body), int64(len(body)), nil); err != nil {
			t.Fatal(err)
		}
	}
	keys := hintKeys(t, b)
	rc, _, err := b.Get(ctx, keys[0], 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	signed, _ := io.ReadAll(rc)
	rc.Close()
	var h Hint
	if err := json.Unmarshal(signed, &h); err != nil {
		t.Fatal(err)
	}
	alter := func(f func(*Hint)) []byte {
		c := h
		f(&c)
		body, _ := json.Marshal(c)
		return body
	}
	clock.Advance(time.Second)
	at := clock.Now().UnixNano()
	put(fmt.Sprintf("%s%019d-x", hintPrefix, at), []byte(`{"route":"hub","repo":"library/app","tag":"stable","digest":"`+string(d)+`","by":"x"}`))
	for i, body := range [][]byte{
		alter(func(c *Hint) { c.Repo = "library/other" }),
		alter(func(c *Hint) { c.Digest = digest.FromString("v3") }),
	} {
		var c Hint
		_ = json.Unmarshal(body, &c)
		c.At = time.Unix(0, at+int64(i)+1).UTC()
		body, _ = json.Marshal(c) // a time of its own, as its key says
		put(fmt.Sprintf("%s%019d-a", hintPrefix, at+int64(i)+1), body)
	}
	put(fmt.Sprintf("%s%019d-a", hintPrefix, at+10), signed)
	if hs, err := us.Hints(ctx); err != nil || len(hs) != 0 {
		t.Fatalf("forged hints read: %+v, %v", hs, err)
	}

	clock.Advance(2 * hintKeep)
	if _, err := us.Hints(ctx); err != nil {
		t.Fatal(err)
	}
	if keys := hintKeys(t, b); len(keys) != 0 {
		t.Fatalf("hints older than %v are still there: %v", hintKeep, keys)
	}
}

// latePut is a backend whose Puts become visible only when flush is
// called: a PUT that takes a while, or a writer whose clock is behind.
type latePut struct {
	Backend
	pending []func()
}

func (b *latePut) Put(ctx context.Context, key string, r io.Reader, size int64, meta map[string]string) error {
	body, _ := io.ReadAll(r)
	b.pending = append(b.pending, func() { _ = b.Backend.Put(ctx, key, bytes.NewReader(body), size, meta) })
	return nil
}

func (b *latePut) flush() {
	for _, f := range b.pending {
		f()
	}
}

// A hint whose write lands after a later one was listed is still read.
func TestAHintThatLandsLateIsStillRead(t *testing.T) {
	t.Parallel()
	clock := testkit.NewClock(time.Date(2026, 12, 6, 0, 0, 0, 0, time.UTC))
	b := dirBackend(t)
	late := &latePut{Backend: b}
	a, err := New(late, fleetSigner(t, "a"), Member{ID: "a", Region: "eu", Peer: "a.peers:5001"}, WithClock(clock.Now), WithTTL(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	f := fleetOn(t, b, clock, "us/b", "ap/c")
	bm, reader := f["us/b"], f["ap/c"]
	ctx := t.Context()
	if err := a.PutHint(ctx, "hub", "library/app", "stable", digest.FromString("app v2")); err != nil {
		t.Fatal(err)
	}
	clock.Advance(500 * time.Millisecond)
	if err := bm.PutHint(ctx, "hub", "library/web", "stable", digest.FromString("web v2")); err != nil {
		t.Fatal(err)
	}
	if hs, err := reader.Hints(ctx); err != nil || len(hs) != 1 || hs[0].Repo != "library/web" {
		t.Fatalf("first listing: %+v, %v", hs, err)
	}
	late.flush() // a's hint lands, with an earlier time than b's
	clock.Advance(10 * time.Second)
	if hs, err := reader.Hints(ctx); err != nil || len(hs) != 1 || hs[0].Repo != "library/app" {
		t.Fatalf("a's late hint: %+v, %v", hs, err)
	}
}

// hintKeys lists the keys under hintPrefix.
func hintKeys(t *testing.T, b Backend) []string {
	t.Helper()
	var keys []string
	if err := b.List(t.Context(), hintPrefix, func(o storjtier.ObjectInfo) error {
		keys = append(keys, o.Key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return keys
}
