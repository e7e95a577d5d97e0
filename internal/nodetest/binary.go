package nodetest

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
)

// edgePackage is the main package of the node, built by Binary.
const edgePackage = "github.com/edgeregistry/edge/cmd/edge"

var build struct {
	once sync.Once
	path string
	err  error
}

// Binary builds ./cmd/edge once per test process (with -race when the tests
// run with -race, so that races in the node fail the test) or returns
// $EDGE_BIN.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("EDGE_BIN"); p != "" {
		return p
	}
	build.once.Do(func() {
		dir, err := os.MkdirTemp("", "edge-bin-")
		if err != nil {
			build.err = err
			return
		}
		build.path = filepath.Join(dir, "edge")
		args := []string{"build", "-o", build.path}
		if raceEnabled {
			args = append(args, "-race")
		}
		// The test runs in its package's directory, inside the module.
		cmd := exec.Command(goBinary(), append(args, edgePackage)...)
		if out, err := cmd.CombinedOutput(); err != nil {
			build.err = fmt.Errorf("go build ./cmd/edge: %v\n%s", err, out)
		}
	})
	if build.err != nil {
		t.Fatal(build.err)
	}
	return build.path
}

// RemoveBinary deletes what Binary built; TestMain calls it after m.Run.
func RemoveBinary() {
	if build.path != "" {
		os.RemoveAll(filepath.Dir(build.path))
	}
}

func goBinary() string {
	if p, err := exec.LookPath("go"); err == nil {
		return p
	}
	return filepath.Join(runtime.GOROOT(), "bin", "go")
}
