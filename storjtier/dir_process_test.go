package storjtier_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/edgeregistry/edge/storjtier"
)

// TestDirSharedByProcesses has two other processes overwrite one key with
// two versions, each with its own metadata, while this one reads it: a
// reader never sees the data of one version with the metadata of the other.
func TestDirSharedByProcesses(t *testing.T) {
	t.Parallel()
	root := t.TempDir()
	var procs []*exec.Cmd
	for _, v := range []string{"a", "b"} {
		cmd := exec.Command(os.Args[0], "-test.run=^TestDirHelperProcess$")
		cmd.Env = append(os.Environ(), "EDGE_DIR_HELPER_ROOT="+root, "EDGE_DIR_HELPER_VERSION="+v)
		cmd.Stderr = os.Stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		procs = append(procs, cmd)
	}
	d := newDir(t, root)
	ctx := context.Background()
	done := make(chan error, len(procs))
	for _, p := range procs {
		go func() { done <- p.Wait() }()
	}
	reads, running := 0, len(procs)
	for running > 0 {
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("writer process: %v", err)
			}
			running--
			continue
		default:
		}
		rc, info, err := d.Get(ctx, "tags/r/repo/_tags/latest", 0, -1)
		if errors.Is(err, storjtier.ErrNotFound) {
			continue
		}
		if err != nil {
			t.Fatalf("Get: %v", err)
		}
		data, err := io.ReadAll(rc)
		_ = rc.Close()
		if err != nil {
			t.Fatal(err)
		}
		reads++
		v := info.Meta["version"]
		if want := helperContent(v); !bytes.Equal(data, want) || info.Size != int64(len(want)) {
			t.Fatalf("read %d bytes with the metadata of version %q: mixed versions", len(data), v)
		}
	}
	if reads == 0 {
		t.Error("no read saw the object")
	}
}

func helperContent(v string) []byte {
	if v == "a" {
		return []byte(strings.Repeat("a", 3000))
	}
	return []byte(strings.Repeat("b", 7))
}

func TestDirHelperProcess(t *testing.T) {
	root, v := os.Getenv("EDGE_DIR_HELPER_ROOT"), os.Getenv("EDGE_DIR_HELPER_VERSION")
	if root == "" {
		t.Skip("helper of TestDirSharedByProcesses")
	}
	d := newDir(t, root)
	data := helperContent(v)
	for range 100 {
		if err := d.Put(context.Background(), "tags/r/repo/_tags/latest", bytes.NewReader(data), int64(len(data)), map[string]string{"version": v}); err != nil {
			t.Fatal(err)
		}
	}
}
