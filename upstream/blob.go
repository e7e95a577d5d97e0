package upstream

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// maxResumes is how many times one Blob resumes a broken body.
const maxResumes = 3

// HeadBlob returns the size of blob d of repo.
func (c *Client) HeadBlob(ctx context.Context, repo string, d digest.Digest) (size int64, err error) {
	const op = "head_blob"
	if err := c.checkBlob(op, repo, d); err != nil {
		return 0, err
	}
	err = c.meta(ctx, func(ctx context.Context) error {
		resp, err := c.send(ctx, op, repo, d.String(), http.MethodHead, "/v2/"+repo+"/blobs/"+d.String(), nil)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK {
			return c.statusError(op, repo, d.String(), resp)
		}
		drain(resp.Body)
		size = resp.ContentLength
		return nil
	})
	return size, err
}

func (c *Client) checkBlob(op, repo string, d digest.Digest) error {
	if err := c.checkName(op, repo); err != nil {
		return err
	}
	if err := d.Validate(); err != nil {
		return c.newError(op, repo, d.String(), fmt.Errorf("%w digest: %v", ErrInvalid, err))
	}
	return nil
}

// Blob is the body of a blob from an origin, from Offset on. Read resumes a
// body that breaks before its end, or sends nothing for BlobIdleTimeout,
// with a Range request from the byte reached, up to a few times, when the
// origin answers 206. It does not verify the digest. Close it.
type Blob struct {
	Size   int64 // total size of the blob, -1 if unknown
	Offset int64 // where the stream starts

	c       *Client
	ctx     context.Context
	repo    string
	d       digest.Digest
	body    io.ReadCloser
	cancel  context.CancelCauseFunc
	reached int64 // absolute offset of the next byte
	resumes int
	err     error // sticky
}

// Read reads the blob, resuming a broken body.
func (b *Blob) Read(p []byte) (int, error) {
	for {
		if b.err != nil {
			return 0, b.err
		}
		n, err := b.readBody(p)
		b.reached += int64(n)
		if err == nil {
			return n, nil
		}
		if errors.Is(err, io.EOF) {
			if b.Size < 0 || b.reached == b.Size {
				b.err = io.EOF
				return n, io.EOF
			}
			err = io.ErrUnexpectedEOF // short of Size
		}
		if rerr := b.resume(err); rerr != nil {
			b.err = rerr
		}
		if n > 0 {
			return n, nil
		}
	}
}

// readBody reads the body, which is cut when it sends nothing within the
// idle timeout; such a stall counts against the origin in its breaker.
func (b *Blob) readBody(p []byte) (int, error) {
	cancel := b.cancel
	stop := b.c.clock.AfterFunc(b.c.cfg.BlobIdleTimeout, func() { cancel(errBodyIdle) })
	n, err := b.body.Read(p)
	if !stop() && !errors.Is(err, io.EOF) {
		// The timer fired: the body is cut, whether or not the transport has
		// closed the connection yet, so the next read resumes.
		err = errBodyIdle
		b.c.brk.record(failed, err)
	}
	return n, err
}

// Close releases the connection.
func (b *Blob) Close() error {
	if b.body != nil {
		_ = b.body.Close()
	}
	if b.cancel != nil {
		b.cancel(nil)
	}
	if b.err == nil {
		b.err = errors.New("upstream: read of closed blob")
	}
	return nil
}

// Resumes returns how many times the body was resumed.
func (b *Blob) Resumes() int { return b.resumes }

// resume replaces the broken body with the rest of the blob.
func (b *Blob) resume(cause error) error {
	const op = "get_blob"
	_ = b.body.Close()
	b.cancel(nil)
	b.body = http.NoBody
	broken := b.c.newError(op, b.repo, b.d.String(),
		fmt.Errorf("body broke at byte %d of %d: %w", b.reached, b.Size, cause))
	for b.resumes < maxResumes {
		if b.ctx.Err() != nil {
			return broken
		}
		b.resumes++
		wait := 100 * time.Millisecond << (b.resumes - 1)
		b.c.log.Info("origin blob resume", "route", b.c.cfg.Name, "repo", b.repo, "digest", b.d,
			"offset", b.reached, "size", b.Size, "try", b.resumes, "err", cause)
		if b.c.sleep(b.ctx, wait) != nil {
			return broken
		}
		resp, cancel, err := b.c.fetchBlob(b.ctx, b.repo, b.d, b.reached)
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Temporary() && !errors.Is(err, ErrBreakerOpen) {
				continue
			}
			return err
		}
		if resp.StatusCode != http.StatusPartialContent {
			drain(resp.Body)
			cancel(nil)
			return b.c.newError(op, b.repo, b.d.String(),
				fmt.Errorf("origin answered %d to a Range request, cannot resume: %w", resp.StatusCode, cause))
		}
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != b.reached || (b.Size >= 0 && total >= 0 && total != b.Size) {
			drain(resp.Body)
			cancel(nil)
			return b.c.newError(op, b.repo, b.d.String(),
				fmt.Errorf("%w Content-Range %q for a resume at %d: %w", ErrInvalid, resp.Header.Get("Content-Range"), b.reached, cause))
		}
		b.body, b.cancel = resp.Body, cancel
		b.c.observeResume()
		return nil
	}
	return broken
}

// GetBlob opens blob d of repo from offset on. The wait for the response
// headers is bounded by MetaTimeout and retried like a metadata call; the
// body by BlobIdleTimeout between bytes, and by ctx.
func (c *Client) GetBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (*Blob, error) {
	const op = "get_blob"
	if err := c.checkBlob(op, repo, d); err != nil {
		return nil, err
	}
	if offset < 0 {
		return nil, c.newError(op, repo, d.String(), fmt.Errorf("%w offset %d", ErrInvalid, offset))
	}
	var (
		resp   *http.Response
		cancel context.CancelCauseFunc
	)
	err := c.retry(ctx, c.clock.Now().Add(c.cfg.MetaTimeout), func() error {
		var err error
		resp, cancel, err = c.fetchBlob(ctx, repo, d, offset)
		if err != nil {
			return err
		}
		if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusPartialContent {
			cancel(nil)
			return c.statusError(op, repo, d.String(), resp)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	b := &Blob{Size: -1, Offset: offset, c: c, ctx: ctx, repo: repo, d: d, body: resp.Body, cancel: cancel, reached: offset}
	switch resp.StatusCode {
	case http.StatusPartialContent:
		start, total, ok := contentRange(resp.Header.Get("Content-Range"))
		if !ok || start != offset {
			b.Close()
			return nil, c.newError(op, repo, d.String(),
				fmt.Errorf("%w Content-Range %q for offset %d", ErrInvalid, resp.Header.Get("Content-Range"), offset))
		}
		b.Size = total
	default: // 200: the whole blob
		b.Size = resp.ContentLength
		if offset > 0 {
			// The origin ignored Range: skip to the offset, streaming.
			if _, err := io.CopyN(io.Discard, resp.Body, offset); err != nil {
				b.Close()
				return nil, c.newError(op, repo, d.String(), fmt.Errorf("skipping to offset %d: %w", offset, err))
			}
		}
	}
	return b, nil
}

// fetchBlob sends one GET for the blob from offset on. The response headers
// must come within MetaTimeout; the returned cancel ends the body.
func (c *Client) fetchBlob(ctx context.Context, repo string, d digest.Digest, offset int64) (*http.Response, context.CancelCauseFunc, error) {
	const op = "get_blob"
	// A place among the route's concurrent requests is waited for before
	// the headers' clock starts: a blob queued behind others is not late.
	release, err := c.wait(ctx)
	if err != nil {
		return nil, nil, c.failure(ctx, op, repo, d.String(), err)
	}
	ctx = withPlace(ctx, release)
	ctx, cancel := context.WithCancelCause(ctx)
	stop := c.clock.AfterFunc(c.cfg.MetaTimeout, func() { cancel(errHeaderTimeout) })
	var hdr http.Header
	if offset > 0 {
		hdr = http.Header{"Range": {"bytes=" + strconv.FormatInt(offset, 10) + "-"}}
	}
	resp, err := c.send(ctx, op, repo, d.String(), http.MethodGet, "/v2/"+repo+"/blobs/"+d.String(), hdr)
	if !stop() && err == nil {
		// The timer fired as the headers came: the body is already cut.
		resp.Body.Close()
		err = c.newError(op, repo, d.String(), errHeaderTimeout)
	}
	if err != nil {
		release() // unless send had it back already (it is given back once)
		timedOut := errors.Is(context.Cause(ctx), errHeaderTimeout)
		cancel(nil)
		if timedOut {
			err = c.newError(op, repo, d.String(), errHeaderTimeout)
		}
		return nil, nil, err
	}
	return resp, cancel, nil
}

// contentRange parses "bytes start-end/total" (total may be "*": -1).
func contentRange(v string) (start, total int64, ok bool) {
	rest, found := strings.CutPrefix(v, "bytes ")
	if !found {
		return 0, 0, false
	}
	rng, tot, found := strings.Cut(rest, "/")
	if !found {
		return 0, 0, false
	}
	s, _, found := strings.Cut(rng, "-")
	if !found {
		return 0, 0, false
	}
	start, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, 0, false
	}
	total = -1
	if tot != "*" {
		if total, err = strconv.ParseInt(tot, 10, 64); err != nil {
			return 0, 0, false
		}
	}
	return start, total, true
}
