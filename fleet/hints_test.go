package fleet

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/testkit"
	"github.com/edgeregistry/edge/storjtier"
)

// A hint written by one member is read by the others, once, newest time
// first passed back; its writer does not read its own. Hints not signed
// with the fleet secret, or under another key, are skipped, and hints past
// an hour are removed.
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
	start := clock.Now().Add(-time.Second)
	hs, newest, err := us.Hints(ctx, start)
	if err != nil || len(hs) != 1 {
		t.Fatalf("Hints: %+v, %v", hs, err)
	}
	if h := hs[0]; h.Route != "hub" || h.Repo != "library/app" || h.Tag != "stable" || h.Digest != d || h.Region != "eu" || h.By != "a" {
		t.Fatalf("hint %+v", h)
	}
	if own, _, _ := a.Hints(ctx, start); len(own) != 0 {
		t.Fatalf("a reads its own hint: %+v", own)
	}
	if again, _, _ := us.Hints(ctx, newest); len(again) != 0 {
		t.Fatalf("the same hint read twice: %+v", again)
	}

	// Forged: unsigned, and a signed hint copied under another key.
	clock.Advance(time.Second)
	put := func(key, body string) {
		if err := b.Put(ctx, key, strings.NewReader(body), int64(len(body)), nil); err != nil {
			t.Fatal(err)
		}
	}
	put(fmt.Sprintf("%s%019d-x", hintPrefix, clock.Now().UnixNano()), `{"route":"hub","repo":"library/app","tag":"stable","digest":"`+string(d)+`","by":"x"}`)
	keys := hintKeys(t, b)
	rc, _, err := b.Get(ctx, keys[0], 0, -1)
	if err != nil {
		t.Fatal(err)
	}
	var signed bytes.Buffer
	_, _ = signed.ReadFrom(rc)
	rc.Close()
	put(fmt.Sprintf("%s%019d-a", hintPrefix, clock.Now().UnixNano()+1), signed.String())
	if hs, _, err := us.Hints(ctx, newest); err != nil || len(hs) != 0 {
		t.Fatalf("forged hints read: %+v, %v", hs, err)
	}

	clock.Advance(2 * hintKeep)
	if _, _, err := us.Hints(ctx, newest); err != nil {
		t.Fatal(err)
	}
	if keys := hintKeys(t, b); len(keys) != 0 {
		t.Fatalf("hints older than %v are still there: %v", hintKeep, keys)
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
