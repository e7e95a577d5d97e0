package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

var client = &http.Client{Timeout: 5 * time.Minute}

const acceptManifests = "application/vnd.docker.distribution.manifest.v2+json, application/vnd.oci.image.manifest.v1+json"

type descriptor struct {
	Digest string `json:"digest"`
	Size   int64  `json:"size"`
}

// pull fetches repo:tag from the node at base, then every blob it references,
// parallel at a time, and checks the manifest's digest against want and
// every blob's size and digest against its descriptor.
func pull(ctx context.Context, base, repo, tag, want string, parallel int) error {
	return pullWith(ctx, client, base, repo, tag, want, parallel, func(f func() error) error { return f() })
}

// pullWith is pull through c, each request (the manifest, each blob) run by
// try, which may retry it.
func pullWith(ctx context.Context, c *http.Client, base, repo, tag, want string, parallel int, try func(func() error) error) error {
	var body []byte
	err := try(func() error {
		var err error
		if body, err = get(ctx, c, base+"/v2/"+repo+"/manifests/"+tag, acceptManifests, -1); err != nil {
			return fmt.Errorf("manifest: %w", err)
		}
		if got := benchkit.Digest(body); got != want {
			return fmt.Errorf("manifest digest %s, want %s", got, want)
		}
		return nil
	})
	if err != nil {
		return err
	}
	var m struct {
		Config descriptor   `json:"config"`
		Layers []descriptor `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return fmt.Errorf("manifest: %w", err)
	}
	blobs := append([]descriptor{m.Config}, m.Layers...)
	sem := make(chan struct{}, max(parallel, 1))
	errs := make(chan error, len(blobs))
	var wg sync.WaitGroup
	for _, b := range blobs {
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := try(func() error {
				if err := getBlob(ctx, c, base+"/v2/"+repo+"/blobs/"+b.Digest, b); err != nil {
					return fmt.Errorf("blob %s: %w", b.Digest, err)
				}
				return nil
			}); err != nil {
				errs <- err
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs // the first error, or nil
}

// getBlob checks the size and digest of a blob as it streams, as a
// client writing it to disk would, without holding it in memory.
func getBlob(ctx context.Context, c *http.Client, url string, want descriptor) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return err
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
		return fmt.Errorf("%s: %.200s", resp.Status, body)
	}
	h := sha256.New()
	n, err := io.Copy(h, io.LimitReader(resp.Body, want.Size+1))
	if err != nil {
		return err
	}
	if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); n != want.Size || got != want.Digest {
		return fmt.Errorf("%d bytes with digest %s", n, got)
	}
	return nil
}

// get returns the body of a 200 answer to GET url, at most limit bytes (or
// 4 MiB when limit < 0) plus one, so that a longer body shows.
func get(ctx context.Context, c *http.Client, url, accept string, limit int64) ([]byte, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := c.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if limit < 0 {
		limit = 4 << 20
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("%s: %.200s", resp.Status, body)
	}
	return body, nil
}

// drain waits until the node's write-behind queue is empty: all blob fills
// of the pull have ended (so nothing is left to queue) and the queue depth
// is 0 on two scrapes in a row.
func drain(ctx context.Context, n *node, fills int, timeout time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := start.Add(timeout)
	zeros := 0
	for {
		m, err := benchkit.Scrape(ctx, client, n.admin)
		if err != nil {
			return 0, err
		}
		if m.Sum("edge_fills_total") >= float64(fills) && m.Sum("edge_writebehind_queue_depth") == 0 {
			zeros++
		} else {
			zeros = 0
		}
		if zeros == 2 {
			return time.Since(start), nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("region %s: write-behind queue not drained within %s (depth %v)",
				n.region, timeout, m.Sum("edge_writebehind_queue_depth"))
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
}
