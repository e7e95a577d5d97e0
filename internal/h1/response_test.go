package h1

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestBodyFraming(t *testing.T) {
	t.Parallel()
	big := strings.Repeat("0123456789abcdef", 1024) // 16 KiB, past the held body
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/small":
			_, _ = io.WriteString(w, "hello")
		case "/big":
			for i := 0; i < len(big); i += 1000 {
				_, _ = io.WriteString(w, big[i:min(i+1000, len(big))])
			}
		case "/flush":
			_, _ = io.WriteString(w, "part1,")
			w.(http.Flusher).Flush()
			_, _ = io.WriteString(w, "part2")
		case "/length":
			w.Header().Set("Content-Length", strconv.Itoa(len(big)))
			_, _ = io.WriteString(w, big)
		case "/over":
			w.Header().Set("Content-Length", "3")
			if _, err := io.WriteString(w, "four"); !errors.Is(err, http.ErrContentLength) {
				panic("a write past Content-Length was taken")
			}
			_, _ = io.WriteString(w, "abc")
		case "/nocontent":
			w.WriteHeader(http.StatusNoContent)
			if _, err := io.WriteString(w, "x"); !errors.Is(err, http.ErrBodyNotAllowed) {
				panic("a body was taken for a 204")
			}
		case "/status":
			w.WriteHeader(http.StatusNotFound)
			w.WriteHeader(http.StatusOK) // ignored
			_, _ = io.WriteString(w, "missing")
		}
	}), 0)
	c := dial(t, n.addr)
	for _, tc := range []struct {
		path, method string
		status       int
		body         string
		length       int64
		chunked      bool
	}{
		{"/small", "GET", 200, "hello", 5, false},
		{"/small", "HEAD", 200, "", 5, false},
		{"/big", "GET", 200, big, -1, true},
		{"/flush", "GET", 200, "part1,part2", -1, true},
		{"/length", "GET", 200, big, int64(len(big)), false},
		{"/length", "HEAD", 200, "", int64(len(big)), false},
		{"/over", "GET", 200, "abc", 3, false},
		{"/nocontent", "GET", 204, "", 0, false},
		{"/status", "GET", 404, "missing", 7, false},
	} {
		c.send(tc.method + " " + tc.path + " HTTP/1.1\r\nHost: edge\r\n\r\n")
		resp, body := c.read(tc.method)
		chunked := len(resp.TransferEncoding) > 0 && resp.TransferEncoding[0] == "chunked"
		if resp.StatusCode != tc.status || body != tc.body || resp.ContentLength != tc.length || chunked != tc.chunked {
			t.Errorf("%s %s: got %d, %d bytes, length %d, chunked %v; want %d, %d bytes, length %d, chunked %v",
				tc.method, tc.path, resp.StatusCode, len(body), resp.ContentLength, chunked,
				tc.status, len(tc.body), tc.length, tc.chunked)
		}
	}
}

func TestShortBodyClosesTheConnection(t *testing.T) {
	t.Parallel()
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		_, _ = io.WriteString(w, "short")
	}), 0)
	c := dial(t, n.addr)
	c.send(get("/"))
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if body, err := io.ReadAll(resp.Body); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Errorf("a short body read as %q, %v; want io.ErrUnexpectedEOF", body, err)
	}
}

func TestSendfileBody(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "blob")
	content := bytes.Repeat([]byte("edge"), 300_000)
	if err := os.WriteFile(path, content, 0o600); err != nil {
		t.Fatal(err)
	}
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f, err := os.Open(path)
		if err != nil {
			panic(err)
		}
		defer f.Close()
		size := int64(len(content))
		if r.URL.Path == "/head-of-file" {
			size = 1000
		}
		w.Header().Set("Content-Length", strconv.FormatInt(size, 10))
		_, _ = w.(io.ReaderFrom).ReadFrom(&io.LimitedReader{R: f, N: size})
	}), 0)
	c := dial(t, n.addr)
	for range 2 {
		c.send(get("/") + get("/head-of-file"))
		if _, body := c.read("GET"); body != string(content) {
			t.Errorf("whole file: %d bytes, want %d", len(body), len(content))
		}
		if _, body := c.read("GET"); body != string(content[:1000]) {
			t.Errorf("first 1000 bytes: got %d bytes", len(body))
		}
	}
}

func TestHeaderValuesCannotAddLines(t *testing.T) {
	t.Parallel()
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Content-Type"] = []string{"text/plain\r\nInjected: yes"}
		w.Header()["Bad Name"] = []string{"dropped"}
	}), 0)
	c := dial(t, n.addr)
	c.send(get("/"))
	resp, _ := c.read("GET")
	if resp.Header.Get("Injected") != "" || resp.Header.Get("Content-Type") != "text/plain  Injected: yes" {
		t.Errorf("headers: %v", resp.Header)
	}
}

func TestResponseHeaderCleanup(t *testing.T) {
	t.Parallel()
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/te":
			h.Set("Transfer-Encoding", "chunked")
			_, _ = io.WriteString(w, "hello")
		case "/204":
			h.Set("Content-Length", "5")
			h.Set("Transfer-Encoding", "chunked")
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			h.Set("Content-Type", "text/plain")
			h.Set("Content-Length", "5")
			h.Set("Etag", `"x"`)
			w.WriteHeader(http.StatusNotModified)
		case "/late":
			h.Set("Early", "yes")
			w.WriteHeader(http.StatusOK)
			h.Set("Late", "yes") // after the status: not sent, as with net/http
			_, _ = io.WriteString(w, "ok")
		case "/close":
			h.Set("Connection", "close")
			_, _ = io.WriteString(w, "bye")
		}
	}), 0)
	c := dial(t, n.addr)
	raw := func(path string) string {
		t.Helper()
		c.send(get(path))
		resp, err := http.ReadResponse(c.br, nil)
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		body, _ := io.ReadAll(resp.Body)
		var b strings.Builder
		_ = resp.Header.Write(&b)
		return fmt.Sprintf("%d %v %d %s|close=%v|%s", resp.StatusCode, resp.TransferEncoding, resp.ContentLength, body, resp.Close, b.String())
	}
	if got := raw("/te"); !strings.HasPrefix(got, "200 [] 5 hello|") {
		t.Errorf("/te: %s", got)
	}
	if got := raw("/204"); !strings.HasPrefix(got, "204 [] 0 |") || strings.Contains(got, "Content-Length") {
		t.Errorf("/204: %s", got)
	}
	if got := raw("/304"); !strings.HasPrefix(got, "304 [] 0 |") || strings.Contains(got, "Content-Type") ||
		strings.Contains(got, "Content-Length") || !strings.Contains(got, `Etag: "x"`) {
		t.Errorf("/304: %s", got)
	}
	if got := raw("/late"); !strings.Contains(got, "Early: yes") || strings.Contains(got, "Late") {
		t.Errorf("/late: %s", got)
	}
	if got := raw("/close"); !strings.Contains(got, "bye|close=true|") {
		t.Errorf("/close: %s", got)
	}
	if !c.closed() {
		t.Error("a handler's Connection: close left the connection open")
	}
}

func TestInvalidStatusPanics(t *testing.T) {
	t.Parallel()
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(1000) }), 0)
	c := dial(t, n.addr)
	c.send(get("/"))
	if !c.closed() || !strings.Contains(n.log.String(), "invalid WriteHeader code 1000") {
		t.Errorf("WriteHeader(1000) was not refused; log: %s", n.log.String())
	}
}

func TestFailedWriteEndsTheRequestContext(t *testing.T) {
	t.Parallel()
	ended := make(chan error, 1)
	n := start(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 64<<10)
		for {
			if _, err := w.Write(chunk); err != nil {
				break
			}
			w.(http.Flusher).Flush()
		}
		ended <- r.Context().Err()
	}), 0)
	c := dial(t, n.addr)
	c.send(get("/"))
	if _, err := c.br.Peek(1); err != nil {
		t.Fatal(err)
	}
	_ = c.conn.Close()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("after a failed write the request context is %v", err)
	}
}
