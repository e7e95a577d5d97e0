package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/distribution/distribution/v3/configuration"
	"github.com/distribution/distribution/v3/registry/handlers"
	"github.com/opencontainers/go-digest"
	"github.com/sirupsen/logrus"

	// The storage driver registers itself.
	_ "github.com/distribution/distribution/v3/registry/storage/driver/filesystem"
)

// origin is distribution's registry running in this process, as the tests
// run it (internal/origintest), with filesystem storage.
type origin struct {
	url string
	srv *http.Server
	app *handlers.App
}

func startOrigin(ctx context.Context, dir string) (*origin, error) {
	logrus.SetOutput(io.Discard)
	logrus.SetLevel(logrus.PanicLevel)
	cfg := &configuration.Configuration{}
	cfg.Storage = configuration.Storage{
		"filesystem":  configuration.Parameters{"rootdirectory": dir},
		"maintenance": configuration.Parameters{"uploadpurging": map[any]any{"enabled": false}},
	}
	cfg.HTTP.Secret = "bench-scale"
	cfg.Log.Level = "error"
	cfg.Log.AccessLog.Disabled = true
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &origin{url: "http://" + l.Addr().String(), app: handlers.NewApp(ctx, cfg)}
	o.srv = &http.Server{Handler: o.app, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = o.srv.Serve(l) }()
	return o, nil
}

func (o *origin) close() {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	_ = o.srv.Shutdown(ctx)
	_ = o.app.Shutdown()
}

// seed pushes n random blobs of min to max bytes to repo, workers at a time,
// and returns their digests and sizes.
func (o *origin) seed(ctx context.Context, repo string, n int, minSize, maxSize int64, workers int) ([]blobMeta, error) {
	slog.Info("seeding the origin", "repo", repo, "blobs", n, "KiB", fmt.Sprintf("%d-%d", minSize>>10, maxSize>>10))
	c := &http.Client{Timeout: 5 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	defer c.CloseIdleConnections()
	out := make([]blobMeta, n)
	err := forEach(ctx, "seeding "+repo, workers, n, func() func(int) error {
		src := newSource()
		rng := rand.New(src)
		buf := make([]byte, maxSize)
		return func(i int) error {
			b := buf[:minSize+rng.Int64N(maxSize-minSize+1)]
			_, _ = src.Read(b)
			d := digest.FromBytes(b)
			if err := o.push(ctx, c, repo, d, b); err != nil {
				return fmt.Errorf("push %s: %w", d, err)
			}
			out[i] = blobMeta{d: d, size: int64(len(b))}
			return nil
		}
	})
	return out, err
}

// push uploads one blob: POST to open an upload, PUT its bytes with the
// digest.
func (o *origin) push(ctx context.Context, c *http.Client, repo string, d digest.Digest, b []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, o.url+"/v2/"+repo+"/blobs/uploads/", nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		return fmt.Errorf("POST upload: %s: %s", resp.Status, short(body))
	}
	base, _ := url.Parse(o.url)
	loc, err := base.Parse(resp.Header.Get("Location"))
	if err != nil {
		return fmt.Errorf("upload location: %w", err)
	}
	q := loc.Query()
	q.Set("digest", d.String())
	loc.RawQuery = q.Encode()
	req, err = http.NewRequestWithContext(ctx, http.MethodPut, loc.String(), bytes.NewReader(b))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	resp, err = c.Do(req)
	if err != nil {
		return err
	}
	body, _ = io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		return fmt.Errorf("PUT upload: %s: %s", resp.Status, short(body))
	}
	return nil
}
