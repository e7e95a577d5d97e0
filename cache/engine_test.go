package cache

import (
	"context"
	"testing"
	"time"

	"github.com/edgeregistry/edge/localtier"
)

func TestNewRejectsOptionsThatCannotWork(t *testing.T) {
	t.Parallel()
	store, err := localtier.Open(t.TempDir(), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	for name, opt := range map[string]Option{
		"zero idle timeout":     WithFillIdleTimeout(0),
		"negative fill timeout": WithFillTimeout(-time.Second),
		"nil AfterFunc":         WithAfterFunc(nil),
	} {
		if e, err := New(store, nil, opt); err == nil {
			_ = e.Close(context.Background())
			t.Errorf("%s: accepted", name)
		}
	}
}

// Every series a dashboard reads is there from the start, at zero, so that
// a rate shows the first event.
func TestMetricsAreExportedAtZero(t *testing.T) {
	t.Parallel()
	_, _, reg := newTestEngine(t, t.TempDir(), newFakeGlobal([]byte("x"), -1))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			key := mf.GetName()
			for _, l := range m.GetLabel() {
				key += "," + l.GetName() + "=" + l.GetValue()
			}
			found[key] = true
		}
	}
	for _, want := range []string{
		"edge_fills_total,result=abandoned", "edge_fills_total,result=ok",
		"edge_tier_hits_total,kind=blob,tier=global", "edge_tier_misses_total,kind=manifest,tier=local",
		"edge_fill_bytes_total,tier=origin", "edge_cache_write_failures_total,what=blob",
		"edge_fills_in_flight", "edge_fill_waiters", "edge_coalesced_waiters_total",
	} {
		if !found[want] {
			t.Errorf("%s is not exported before its first event", want)
		}
	}
}
