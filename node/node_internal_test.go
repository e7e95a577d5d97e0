package node

import (
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/testkit"
)

// A route that gives its origin longer than the engine's default is
// honoured: the engine's bound on metadata calls grows past it.
func TestMetaTimeoutHonoursTheRoutes(t *testing.T) {
	t.Parallel()
	if got := metaTimeout([]config.Route{{Name: "a"}}); got != 15*time.Second {
		t.Fatalf("default %v, want 15s", got)
	}
	long := config.Route{Name: "b", Timeouts: config.OriginTimeouts{Metadata: config.Duration(40 * time.Second)}}
	if got := metaTimeout([]config.Route{{Name: "a"}, long}); got <= 40*time.Second {
		t.Fatalf("with a 40s route: %v, want more than 40s", got)
	}
}

// The default budget is a share of what the local tier may use: the free
// space and its own blobs, so that other files on the file system keep
// their room.
func TestDefaultBudgetLeavesOtherFilesTheirRoom(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	total, free := diskStats(dir)
	if total == 0 {
		t.Fatal("the file system of a temporary directory cannot be read")
	}
	n := &Node{cfg: &config.Config{DataDir: dir}, log: slog.New(slog.DiscardHandler)}
	const ours = 1 << 30
	got := n.localMaxSize(ours)
	want := float64(min(free+ours, total)) * localDiskShare
	if d := float64(got) - want; d < -0.01*want || d > 0.01*want { // free space moves a little meanwhile
		t.Fatalf("budget %d, want about %.0f (80%% of free %d plus ours %d, of %d)", got, want, free, ours, total)
	}
	if got > int64(float64(total)*localDiskShare) {
		t.Fatalf("budget %d is more than 80%% of the file system", got)
	}
}

// A scheduled collection is counted in the node's metrics.
func TestScheduledCollectionIsCounted(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.DataDir, cfg.Listen, cfg.AdminListen = t.TempDir(), "127.0.0.1:0", ""
	cfg.Global.Dir.Path = filepath.Join(cfg.DataDir, "global")
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	n, err := New(t.Context(), cfg, WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		t.Fatal(err)
	}
	defer n.Close()
	n.collectOnce(t.Context())
	if got := testkit.Metric(t, n.metrics, "edge_gc_runs_total", map[string]string{"result": "ok"}); got != 1 {
		t.Fatalf("edge_gc_runs_total{result=ok} = %v", got)
	}
	if got := testkit.Metric(t, n.metrics, "edge_gc_last_success_timestamp_seconds", nil); got == 0 {
		t.Fatal("the last success is not recorded")
	}
}
