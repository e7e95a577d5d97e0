package main

import (
	"bytes"
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/admin"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/localtier"
	"github.com/edgeregistry/edge/node"
	"github.com/edgeregistry/edge/storjtier"
)

// writeConfig writes a node's configuration for origin, with its data
// and global tier under dir, and returns its path.
func writeConfig(t *testing.T, dir, origin string) string {
	t.Helper()
	path := filepath.Join(dir, "edge.yaml")
	yaml := `
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: ` + dir + `/data
routes:
  - {name: docker.io, origin: "` + origin + `", default: true, short_name_prefix: library/}
global: {backend: dir, dir: {path: ` + dir + `/global}}
log: {level: warn}
`
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// The operator's commands against a running node: prefetch with a summary
// and plain progress lines, then ls, inspect, pin, purge refused while
// pinned, unpin and purge; a prefetch that fails exits non-zero.
func TestCacheCommands(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	origintest.PushImage(t, origin.URL, "library/app", "v1", 2, 4096)
	dir := t.TempDir()
	path := writeConfig(t, dir, origin.URL)
	cfg, err := config.Load(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	n, err := node.New(ctx, cfg, node.WithLogger(slog.New(slog.DiscardHandler)))
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- n.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	admin := "http://" + n.Addr("admin")

	cmd := func(args ...string) (string, string, error) {
		var out, errOut bytes.Buffer
		err := run(append(args, "--config", path, "--admin", admin), &out, &errOut)
		return out.String(), errOut.String(), err
	}
	out, progress, err := cmd("prefetch", "app:v1")
	if err != nil || !strings.Contains(out, "prefetched 1 images (0 failed): 3 blobs fetched") || !strings.Contains(progress, "app:v1: done") {
		t.Fatalf("prefetch: %v\n%s\n%s", err, out, progress)
	}
	if err := n.WaitWriteBehind(ctx, time.Minute); err != nil { // the tag is in the global tier too
		t.Fatal(err)
	}
	steps := []struct {
		args []string
		want string // in the output; "" for an error
	}{
		{[]string{"cache", "ls"}, "docker.io  library/app  1"},
		{[]string{"cache", "inspect", "app:v1"}, "local"},
		{[]string{"cache", "pin", "app:v1"}, "pinned app:v1: 4 manifests and blobs"},
		{[]string{"cache", "pins"}, "docker.io/library/app:v1"},
		{[]string{"cache", "purge", "app:v1"}, ""},
		{[]string{"cache", "unpin", "app:v1"}, "unpin app:v1: done"},
		{[]string{"cache", "purge", "app", "--global"}, "purged app: 1 tags, 4 links, 1 manifests, 3 blobs locally; 1 from the global tier"},
		{[]string{"cache", "ls", "--json"}, "[]"},
		{[]string{"cache", "inspect"}, ""},
		{[]string{"cache", "frob", "x"}, ""},
	}
	for _, s := range steps {
		out, _, err := cmd(s.args...)
		if s.want == "" {
			if err == nil {
				t.Fatalf("%v: succeeded: %s", s.args, out)
			}
			continue
		}
		if err != nil || !strings.Contains(out, s.want) {
			t.Fatalf("%v: %v\n%s\nwant %q", s.args, err, out, s.want)
		}
	}
	out, progress, err = cmd("prefetch", "app:v1", "app:missing")
	if err == nil || !strings.Contains(out, "(1 failed)") || !strings.Contains(progress, "app:missing: failed") {
		t.Fatalf("prefetch of a missing tag: %v\n%s\n%s", err, out, progress)
	}
}

// A standalone prefetch runs the node of the configuration in the process
// and leaves the content in its local and global tiers.
func TestStandalonePrefetch(t *testing.T) {
	t.Parallel()
	origin := origintest.NewRegistry(t)
	img := origintest.PushImage(t, origin.URL, "library/app", "v1", 1, 4096)
	dir := t.TempDir()
	path := writeConfig(t, dir, origin.URL)
	list := filepath.Join(dir, "images")
	if err := os.WriteFile(list, []byte("# rollout\napp:v1  # the app\n\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run([]string{"prefetch", "--standalone", "--config", path, "--file", list}, &out, &errOut); err != nil {
		t.Fatalf("%v\n%s\n%s", err, out.String(), errOut.String())
	}
	layers, _ := img.Layers()
	d, _ := layers[0].Digest()
	global, err := storjtier.NewDir(storjtier.DirConfig{Path: filepath.Join(dir, "global")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := storjtier.New(global).StatBlob(context.Background(), digest.Digest(d.String())); err != nil {
		t.Fatalf("the layer is not in the global tier: %v", err)
	}
	store, err := localtier.Open(filepath.Join(dir, "data", "local"), localtier.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer store.Close()
	if _, err := store.StatBlob(context.Background(), digest.Digest(d.String())); err != nil {
		t.Fatalf("the layer is not in the local tier: %v", err)
	}
}

// On a terminal, a prefetch shows a bar per image, complete when it is done.
func TestProgressBars(t *testing.T) {
	t.Parallel()
	var out bytes.Buffer
	v := newProgressView(&out, true)
	d := digest.FromString("layer")
	for _, ev := range []admin.Event{
		{Image: "app:v1", State: "resolved", Size: 10 << 20, Blobs: 2},
		{Image: "app:v1", State: "cached", Digest: digest.FromString("config"), Size: 2 << 20},
		{Image: "app:v1", State: "progress", Digest: d, Size: 8 << 20, Done: 4 << 20},
		{Image: "app:v1", State: "fetched", Digest: d, Size: 8 << 20},
		{Image: "app:v1", State: "done"},
		{Image: "web:v2", State: "failed", Error: "manifest unknown"},
	} {
		v.event(ev)
	}
	v.wait()
	for _, want := range []string{"app:v1", "10.0 MiB / 10.0 MiB", "done", "web:v2: failed: manifest unknown"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("progress output lacks %q:\n%s", want, out.String())
		}
	}
}
