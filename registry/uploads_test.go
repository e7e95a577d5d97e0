package registry_test

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/opencontainers/go-digest"

	"github.com/edgeregistry/edge/internal/origintest"
	"github.com/edgeregistry/edge/internal/testkit"
)

// reqStream sends a body of unknown length (chunked), as docker does.
func reqStream(t *testing.T, method, url string, body []byte, hdr ...string) response {
	t.Helper()
	r, err := http.NewRequestWithContext(t.Context(), method, url, io.MultiReader(bytes.NewReader(body)))
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		r.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return response{Status: res.StatusCode, Header: res.Header, Body: b, Err: err}
}

// sessions lists the upload files a node holds.
func sessions(t *testing.T, n *node) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(n.dir, "local", "uploads"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// wantRange checks where an upload session stands.
func wantRange(t *testing.T, n *node, loc string, size int) {
	t.Helper()
	r := req(t, http.MethodGet, n.URL+loc, nil)
	if want := fmt.Sprintf("0-%d", size-1); r.Status != http.StatusNoContent || r.Header.Get("Range") != want {
		t.Fatalf("upload status: %d Range %q, want %s", r.Status, r.Header.Get("Range"), want)
	}
}

func startUpload(t *testing.T, n *node, repo string) string {
	t.Helper()
	r := req(t, http.MethodPost, n.URL+"/v2/"+repo+"/blobs/uploads/", nil)
	if r.Status != http.StatusAccepted || r.Header.Get("Location") == "" {
		t.Fatalf("start: %d %s", r.Status, r.Body)
	}
	return r.Header.Get("Location")
}

// An upload over the limit is refused with 413 BLOB_UPLOAD_INVALID, however
// it comes (monolithic POST, PATCH, PUT with a body; its length declared
// or not), and leaves nothing behind: no blob, no half-written session.
func TestUploadSizeLimit(t *testing.T) {
	t.Parallel()
	const limit = 1000
	n := newNode(t, nodeConfig{global: newDirGlobal(t), maxUpload: limit})
	over, overDigest := origintest.RandomBlob(t, limit+1)
	post := n.URL + "/v2/team/app/blobs/uploads/?digest=" + overDigest.String()
	for name, send := range map[string]func(string, string, []byte, ...string) response{
		"declared": func(m, u string, b []byte, h ...string) response { return req(t, m, u, b, h...) },
		"streamed": func(m, u string, b []byte, h ...string) response { return reqStream(t, m, u, b, h...) },
	} {
		wantError(t, send(http.MethodPost, post, over), http.StatusRequestEntityTooLarge, "BLOB_UPLOAD_INVALID")
		if s := sessions(t, n); len(s) != 0 {
			t.Fatalf("%s monolithic POST left sessions behind: %v", name, s)
		}
		wantError(t, do(t, http.MethodHead, n.URL+"/v2/team/app/blobs/"+overDigest.String()), http.StatusNotFound, "")

		loc := startUpload(t, n, "team/app")
		if r := send(http.MethodPatch, n.URL+loc, over[:600]); r.Status != http.StatusAccepted {
			t.Fatalf("%s: first chunk: %d %s", name, r.Status, r.Body)
		}
		wantError(t, send(http.MethodPatch, n.URL+loc, over[600:]), http.StatusRequestEntityTooLarge, "BLOB_UPLOAD_INVALID")
		wantRange(t, n, loc, 600)
		wantError(t, send(http.MethodPut, n.URL+loc+"?digest="+overDigest.String(), over[600:]), http.StatusRequestEntityTooLarge, "BLOB_UPLOAD_INVALID")
		wantRange(t, n, loc, 600)
		wantError(t, do(t, http.MethodHead, n.URL+"/v2/team/app/blobs/"+overDigest.String()), http.StatusNotFound, "")

		// The session is intact: a blob within the limit still finishes.
		d := digestOf(over[:limit])
		if r := send(http.MethodPut, n.URL+loc+"?digest="+d, over[600:limit]); r.Status != http.StatusCreated {
			t.Fatalf("%s: finishing within the limit: %d %s", name, r.Status, r.Body)
		}
		if r := do(t, http.MethodGet, n.URL+"/v2/team/app/blobs/"+d); r.Status != http.StatusOK || !bytes.Equal(r.Body, over[:limit]) {
			t.Fatalf("%s: pull back: %d", name, r.Status)
		}
	}
	// Exactly the limit, in one POST.
	if r := req(t, http.MethodPost, n.URL+"/v2/team/app/blobs/uploads/?digest="+digestOf(over[1:]), over[1:]); r.Status != http.StatusCreated {
		t.Fatalf("a blob of the limit: %d %s", r.Status, r.Body)
	}
}

// An upload that fills the node's disk is refused with an OCI error, the
// chunk undone: the session stands where it was, nothing stored is
// touched, and the push finishes once it fits. The disk is a real tmpfs
// that fills up, under the node's upload directory.
func TestUploadDiskFull(t *testing.T) {
	root, child := testkit.Tmpfs(t, filepath.Join("local", "uploads"), 256<<10)
	if !child {
		return
	}
	n := newNode(t, nodeConfig{dir: root, global: newDirGlobal(t)})
	stored := []byte("a layer pushed before the disk filled")
	storedDigest := pushBlob(t, n, "team/app", stored)
	data, d := origintest.RandomBlob(t, 192<<10)

	loc := startUpload(t, n, "team/app")
	if r := reqStream(t, http.MethodPatch, n.URL+loc, data[:128<<10]); r.Status != http.StatusAccepted {
		t.Fatalf("first chunk: %d %s", r.Status, r.Body)
	}
	big, _ := origintest.RandomBlob(t, 200<<10)
	for _, send := range []func() response{
		func() response { return reqStream(t, http.MethodPatch, n.URL+loc, big) },
		func() response { return req(t, http.MethodPatch, n.URL+loc, big) },
		func() response { return reqStream(t, http.MethodPut, n.URL+loc+"?digest="+digestOf(big), big) },
	} {
		r := send()
		wantError(t, r, http.StatusInsufficientStorage, "UNAVAILABLE")
		ociError(t, r)
		wantRange(t, n, loc, 128<<10)
	}
	before := len(sessions(t, n))
	wantError(t, req(t, http.MethodPost, n.URL+"/v2/team/app/blobs/uploads/?digest="+digestOf(big), big),
		http.StatusInsufficientStorage, "UNAVAILABLE")
	if s := sessions(t, n); len(s) != before {
		t.Fatalf("a failed monolithic POST left a session behind: %v", s)
	}
	if r := do(t, http.MethodGet, n.URL+"/v2/team/app/blobs/"+storedDigest.String()); r.Status != http.StatusOK || !bytes.Equal(r.Body, stored) {
		t.Fatalf("a blob stored before: %d %q", r.Status, r.Body)
	}

	if r := reqStream(t, http.MethodPut, n.URL+loc+"?digest="+d.String(), data[128<<10:]); r.Status != http.StatusCreated {
		t.Fatalf("finishing once it fits: %d %s", r.Status, r.Body)
	}
	if r := do(t, http.MethodGet, n.URL+"/v2/team/app/blobs/"+d.String()); r.Status != http.StatusOK || !bytes.Equal(r.Body, data) {
		t.Fatalf("pull back: %d", r.Status)
	}
}

func digestOf(b []byte) string { return digest.FromBytes(b).String() }
