package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"sort"

	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/gc"
	"github.com/edgeregistry/edge/node"
	"github.com/edgeregistry/edge/storjtier"
)

const gcUsage = `usage:
  edge gc [--dry-run] [--config FILE] [--json]
      collect the garbage of the configuration's global tier once: pull-through content not read
      within gc.retention, hosted content nothing references past gc.grace (see the README)`

func gcCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("gc", flag.ContinueOnError)
	fs.SetOutput(stdout)
	path := fs.String("config", "", "the node's configuration (embedded defaults when empty)")
	dry := fs.Bool("dry-run", false, "say what would be deleted, delete nothing")
	asJSON := fs.Bool("json", false, "print the report as JSON")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments: %v\n%s", fs.Args(), gcUsage)
	}
	cfg := config.Default()
	if *path != "" {
		var err error
		if cfg, err = config.Load(*path); err != nil {
			return err
		}
	} else if err := cfg.Validate(); err != nil {
		return err
	}
	backend, err := storjtier.Open(ctx, cfg.Global)
	if err != nil {
		return fmt.Errorf("global tier: %w", err)
	}
	if backend == nil {
		return fmt.Errorf("the configuration has no global tier (global.backend)")
	}
	if c, ok := backend.(io.Closer); ok {
		defer c.Close()
	}
	o := node.GCOptions(cfg)
	o.DryRun = *dry
	o.Logger = slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	rep, err := gc.Run(ctx, storjtier.New(backend, storjtier.WithRegion(cfg.Region)), o)
	if rep != nil {
		printGC(stdout, rep, *asJSON)
	}
	return err
}

func printGC(w io.Writer, rep *gc.Report, asJSON bool) {
	if asJSON {
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		_ = enc.Encode(rep)
		return
	}
	verb := "deleted"
	if rep.DryRun {
		verb = "would delete"
		for _, it := range rep.Deleted {
			fmt.Fprintf(w, "%s %s %s (%s)\n", verb, it.Kind, it.Name, it.Reason)
		}
	}
	byKind := map[string]int{}
	for _, it := range rep.Deleted {
		byKind[it.Kind]++
	}
	kinds := make([]string, 0, len(byKind))
	for k := range byKind {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	fmt.Fprintf(w, "%s %d objects, %s of content:", verb, len(rep.Deleted), humanBytes(rep.Bytes))
	for _, k := range kinds {
		fmt.Fprintf(w, " %d %s", byKind[k], k)
	}
	fmt.Fprintf(w, "; %d marked, %d too recent to go, %d spared for pushes, in %s\n", rep.Marked, rep.Kept, rep.Spared, rep.Duration.Round(1e6))
}
