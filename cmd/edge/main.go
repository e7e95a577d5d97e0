// Command edge runs a regional edge node of the registry mirror.
//
//	edge serve [--config FILE]        run the node (embedded defaults without a file)
//	edge config check [--config FILE] check a configuration and print it, secrets redacted
//	edge prefetch IMAGE...            pull images into a node ahead of demand
//	edge cache ls|inspect|purge|pin   what a running node holds, through its admin API
//	edge gc [--dry-run]               collect the garbage of the global tier
//	edge version                      (also --version)
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"

	"gopkg.in/yaml.v3"

	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/node"
)

var version = "dev"

// defaultMemoryLimit is the Go runtime's soft memory limit when GOMEMLIMIT
// is not set: an edge box keeps its memory for the page cache that serves
// blobs, and the node's live heap is small.
const defaultMemoryLimit = 80 << 20

func main() {
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(defaultMemoryLimit)
	}
	if err := run(os.Args[1:], os.Stdout, os.Stderr); err != nil {
		fmt.Fprintln(os.Stderr, "edge:", err)
		os.Exit(1)
	}
}

const usage = `usage:
  edge serve [--config FILE]          run the node (embedded defaults without a file)
  edge config check [--config FILE]   check a configuration and print it, secrets redacted
  edge prefetch [flags] IMAGE...      pull images into a node ahead of demand (edge prefetch --help)
  edge cache ls|inspect|purge|pin|unpin|pins
                                      what a running node holds, through its admin API (edge cache)
  edge gc [--dry-run] [--config FILE] collect the garbage of the global tier once
  edge version                        (also --version)`

func run(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no command\n%s", usage)
	}
	switch args[0] {
	case "serve":
		cfg, err := loadConfig("serve", args[1:], stdout)
		if err != nil {
			return helped(err)
		}
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return serve(ctx, cfg, stderr)
	case "config":
		if len(args) < 2 || args[1] != "check" {
			return fmt.Errorf("unknown config command\n%s", usage)
		}
		cfg, err := loadConfig("config check", args[2:], stdout)
		if err != nil {
			return helped(err)
		}
		// What serve would refuse beyond the file itself: certificates
		// and key, the htpasswd file.
		if err := node.Check(cfg); err != nil {
			return err
		}
		for _, w := range cfg.TokenWarnings() {
			fmt.Fprintln(stderr, "warning:", w)
		}
		out, err := yaml.Marshal(cfg.Redacted())
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "# configuration is valid\n%s", out)
		return nil
	case "prefetch":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return helped(prefetchCommand(ctx, args[1:], stdout, stderr))
	case "cache":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return helped(cacheCommand(ctx, args[1:], stdout))
	case "gc":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		return helped(gcCommand(ctx, args[1:], stdout, stderr))
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, versionLine())
		return nil
	case "help", "-h", "--help":
		fmt.Fprintln(stdout, usage)
		return nil
	default:
		return fmt.Errorf("unknown command %q\n%s", args[0], usage)
	}
}

// helped turns the request for a command's help, which its flag set has
// answered, into success.
func helped(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

// versionLine names the build: the version, the commit it was built from
// (marked when the tree had changes) and the Go release.
func versionLine() string {
	line := "edge " + version
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return line
	}
	var rev, modified string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			rev = s.Value
		case "vcs.modified":
			if s.Value == "true" {
				modified = "+changes"
			}
		}
	}
	if rev == "" {
		rev = "unknown commit"
	}
	return fmt.Sprintf("%s (%s%s, %s)", line, rev, modified, info.GoVersion)
}

func loadConfig(name string, args []string, out io.Writer) (*config.Config, error) {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(out)
	path := fs.String("config", "", "YAML configuration file (embedded defaults when empty)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	if *path == "" {
		cfg := config.Default()
		return cfg, cfg.Validate()
	}
	return config.Load(*path)
}
