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
