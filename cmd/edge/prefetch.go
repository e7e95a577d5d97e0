package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"

	"github.com/edgeregistry/edge/admin"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/node"
)

const prefetchUsage = `usage:
  edge prefetch [flags] IMAGE...     pull images into a node ahead of demand
flags:
  --file FILE        images to prefetch, one per line (# starts a comment)
  --platform P       os/arch[/variant] of multi-platform images to take (repeatable; default all)
  --config FILE      the node's configuration
  --admin URL        the running node's admin listener (default: from the configuration)
  --standalone       run the node of --config in this process instead of asking a running one,
                     and wait until the global tier has what was fetched`

// platforms is a repeatable --platform.
type platforms []string

func (p *platforms) String() string     { return strings.Join(*p, ",") }
func (p *platforms) Set(v string) error { *p = append(*p, v); return nil }

func prefetchCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("prefetch", flag.ContinueOnError)
	fs.SetOutput(stdout)
	var f adminFlags
	f.register(fs)
	var plats platforms
	fs.Var(&plats, "platform", "os/arch[/variant] to take of multi-platform images (repeatable)")
	file := fs.String("file", "", "a file of images, one per line")
	standalone := fs.Bool("standalone", false, "run the node of --config in this process")
	images, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if *file != "" {
		listed, err := readImageList(*file)
		if err != nil {
			return err
		}
		images = append(images, listed...)
	}
	if len(images) == 0 {
		return fmt.Errorf("no image to prefetch\n%s", prefetchUsage)
	}
	req := admin.PrefetchRequest{Images: images, Platforms: plats}
	fh, isFile := stderr.(*os.File)
	show := newProgressView(stderr, isFile && term.IsTerminal(int(fh.Fd())))
	var sum admin.Summary
	if *standalone {
		sum, err = prefetchStandalone(ctx, f.config, req, show.event, stderr)
	} else {
		var c *admin.Client
		if c, err = f.client(); err != nil {
			return err
		}
		sum, err = c.Prefetch(ctx, req, show.event)
	}
	show.wait()
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "prefetched %d images (%d failed): %d blobs fetched (%s), %d already here\n",
		sum.Images, sum.Failed, sum.Fetched, humanBytes(sum.Bytes), sum.Cached)
	if sum.Failed > 0 {
		return fmt.Errorf("%d of %d images failed", sum.Failed, sum.Images)
	}
	return nil
}

// readImageList reads images one per line; blank lines and # comments
// are skipped.
func readImageList(path string) ([]string, error) {
	fh, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var out []string
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		line, _, _ := strings.Cut(sc.Text(), "#")
		if line = strings.TrimSpace(line); line != "" {
			out = append(out, line)
		}
	}
	return out, sc.Err()
}

// prefetchStandalone runs the node of the configuration in this process
// (its API on a loopback port of its own, no admin listener), prefetches
// into it, and waits for the write-behind to hand the content to the
// global tier before it stops the node.
func prefetchStandalone(ctx context.Context, path string, req admin.PrefetchRequest, emit func(admin.Event), stderr io.Writer) (admin.Summary, error) {
	cfg := config.Default()
	if path != "" {
		var err error
		if cfg, err = config.Load(path); err != nil {
			return admin.Summary{}, err
		}
	}
	cfg.Listen, cfg.AdminListen = "127.0.0.1:0", ""
	level := new(slog.LevelVar)
	level.Set(slog.LevelWarn)
	n, err := node.New(ctx, cfg, node.WithLogger(slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))))
	if err != nil {
		return admin.Summary{}, fmt.Errorf("%w (is a node running on this data directory? prefetch through it with --admin)", err)
	}
	runCtx, stop := context.WithCancel(context.WithoutCancel(ctx))
	done := make(chan error, 1)
	go func() { done <- n.Run(runCtx) }()
	sum, err := n.Admin().Prefetch(ctx, req, emit)
	if err == nil {
		err = n.WaitWriteBehind(ctx, 10*time.Minute)
	}
	stop()
	if rerr := <-done; err == nil {
		err = rerr
	}
	return sum, err
}

// progressView shows a prefetch: a bar per image on a terminal, a line per
// step otherwise.
type progressView struct {
	out    io.Writer
	p      *mpb.Progress // nil: plain lines
	bars   map[string]*mpb.Bar
	blobAt map[digest.Digest]int64 // bytes of each blob shown so far
	// failures are printed below the bars once they are done.
	failures []string
}

// newProgressView shows a prefetch on out, with bars when out is a
// terminal.
func newProgressView(out io.Writer, terminal bool) *progressView {
	v := &progressView{out: out, bars: map[string]*mpb.Bar{}, blobAt: map[digest.Digest]int64{}}
	if terminal {
		v.p = mpb.New(mpb.WithOutput(out), mpb.WithWidth(64), mpb.ForceAutoRefresh())
	}
	return v
}

// event shows one event; the client calls it from one goroutine.
func (v *progressView) event(ev admin.Event) {
	if v.p == nil {
		v.line(ev)
		return
	}
	bar := v.bars[ev.Image]
	switch ev.State {
	case "resolved":
		v.bars[ev.Image] = v.p.AddBar(ev.Size,
			mpb.PrependDecorators(decor.Name(ev.Image, decor.WCSyncSpaceR), decor.CountersKibiByte("% .1f / % .1f")),
			mpb.AppendDecorators(decor.Percentage()),
			mpb.BarFillerOnComplete("done"))
	case "progress", "fetched", "cached":
		if bar == nil {
			return
		}
		to := ev.Done
		if ev.State != "progress" {
			to = ev.Size
		}
		bar.IncrInt64(to - v.blobAt[ev.Digest])
		v.blobAt[ev.Digest] = to
	case "done":
		if bar != nil {
			bar.SetTotal(-1, true)
		}
	case "failed":
		if bar != nil && ev.Digest == "" {
			bar.Abort(false)
		}
		v.failures = append(v.failures, fmt.Sprintf("%s: failed: %s", nameOf(ev), ev.Error))
	}
}

func (v *progressView) line(ev admin.Event) {
	switch ev.State {
	case "resolved":
		fmt.Fprintf(v.out, "%s: %d blobs, %s\n", ev.Image, ev.Blobs, humanBytes(ev.Size))
	case "fetched":
		fmt.Fprintf(v.out, "%s: fetched %s (%s)\n", ev.Image, ev.Digest, humanBytes(ev.Size))
	case "cached":
		fmt.Fprintf(v.out, "%s: already here %s\n", ev.Image, ev.Digest)
	case "done":
		fmt.Fprintf(v.out, "%s: done\n", ev.Image)
	case "failed":
		fmt.Fprintf(v.out, "%s: failed: %s\n", nameOf(ev), ev.Error)
	}
}

func nameOf(ev admin.Event) string {
	if ev.Digest != "" {
		return ev.Image + " " + string(ev.Digest)
	}
	return ev.Image
}

// wait ends the bars' rendering.
func (v *progressView) wait() {
	if v.p == nil {
		return
	}
	for _, b := range v.bars {
		if !b.Completed() {
			b.Abort(false)
		}
	}
	v.p.Wait()
	for _, f := range v.failures {
		fmt.Fprintln(v.out, f)
	}
}
