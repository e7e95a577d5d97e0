package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/edgeregistry/edge/admin"
	"github.com/edgeregistry/edge/config"
	"github.com/edgeregistry/edge/node"
)

const cacheUsage = `usage:
  edge cache ls                        repositories the node holds
  edge cache inspect NAME [--global]   a repository, a tag, a digest: content, sizes, tier, last access
  edge cache purge NAME [--global]     remove a tag, a repository or a digest (--global: from the global tier too)
  edge cache pin NAME                  keep a tag's or digest's content from eviction and origin deletes
  edge cache unpin NAME
  edge cache pins
flags of every command:
  --config FILE   the node's configuration: its admin_listen and admin token
  --admin URL     the admin listener (default: from the configuration)
  --json          print the API's JSON answer`

// adminFlags are the flags every command that calls the admin API takes.
type adminFlags struct {
	config, url  string
	json, global bool
}

func (f *adminFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "the node's configuration (embedded defaults when empty)")
	fs.StringVar(&f.url, "admin", "", "the admin listener's URL (default: http://<admin_listen>)")
	fs.BoolVar(&f.json, "json", false, "print JSON")
}

// client is the admin API's client that the flags describe: the address
// and the token from the configuration, unless given.
func (f *adminFlags) client() (*admin.Client, error) {
	cfg := config.Default()
	if f.config != "" {
		var err error
		if cfg, err = config.Load(f.config); err != nil {
			return nil, err
		}
	}
	base := f.url
	if base == "" {
		if cfg.AdminListen == "" {
			return nil, fmt.Errorf("the configuration has no admin_listen; give --admin")
		}
		base = "http://" + cfg.AdminListen
	}
	token, err := node.AdminToken(cfg, false)
	if err != nil {
		return nil, fmt.Errorf("%w (set $%s, or give the node's --config)", err, node.AdminTokenEnv)
	}
	return &admin.Client{Base: base, Token: token}, nil
}

// parseInterspersed parses flags placed before and after the positional
// arguments, which it returns.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

func cacheCommand(ctx context.Context, args []string, stdout io.Writer) error {
	if len(args) == 0 {
		return fmt.Errorf("no cache command\n%s", cacheUsage)
	}
	cmd := args[0]
	fs := flag.NewFlagSet("cache "+cmd, flag.ContinueOnError)
	fs.SetOutput(stdout)
	var f adminFlags
	f.register(fs)
	if cmd == "inspect" || cmd == "purge" {
		fs.BoolVar(&f.global, "global", false, "the global tier too")
	}
	pos, err := parseInterspersed(fs, args[1:])
	if err != nil {
		return err
	}
	want := 1
	if cmd == "ls" || cmd == "pins" {
		want = 0
	}
	switch cmd {
	case "ls", "pins", "inspect", "purge", "pin", "unpin":
	default:
		return fmt.Errorf("unknown cache command %q\n%s", cmd, cacheUsage)
	}
	if len(pos) != want {
		return fmt.Errorf("cache %s takes %d name(s), got %d\n%s", cmd, want, len(pos), cacheUsage)
	}
	c, err := f.client()
	if err != nil {
		return err
	}
	var out any
	switch cmd {
	case "ls":
		out, err = c.Repositories(ctx)
	case "pins":
		out, err = c.Pins(ctx)
	case "inspect":
		out, err = c.Inspect(ctx, pos[0], f.global)
	case "purge":
		out, err = c.Purge(ctx, pos[0], f.global)
	case "pin":
		out, err = c.Pin(ctx, pos[0])
	case "unpin":
		err = c.Unpin(ctx, pos[0])
		out = struct{}{}
	}
	if err != nil {
		return err
	}
	if f.json {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(out)
	}
	printCache(stdout, cmd, pos, out)
	return nil
}

// printCache prints an answer of the admin API for people.
func printCache(stdout io.Writer, cmd string, pos []string, out any) {
	w := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	defer w.Flush()
	switch v := out.(type) {
	case []admin.Repository:
		fmt.Fprintln(w, "ROUTE\tREPOSITORY\tTAGS\tDIGESTS")
		for _, r := range v {
			fmt.Fprintf(w, "%s\t%s\t%d\t%d\n", r.Route, r.Name, r.Tags, r.Links)
		}
	case []admin.PinInfo:
		fmt.Fprintln(w, "PIN\tDIGESTS")
		for _, p := range v {
			fmt.Fprintf(w, "%s\t%d\n", p.Name, len(p.Digests))
		}
	case *admin.Inspection:
		printInspection(w, v)
	case admin.Purged:
		fmt.Fprintf(w, "purged %s: %d tags, %d links, %d manifests, %d blobs locally; %d from the global tier\n",
			pos[0], v.Tags, v.Links, v.Manifests, v.Blobs, v.Global)
	case admin.PinInfo:
		fmt.Fprintf(w, "pinned %s: %d manifests and blobs\n", v.Name, len(v.Digests))
	default:
		fmt.Fprintf(w, "%s %s: done\n", cmd, pos[0])
	}
}

func printInspection(w io.Writer, in *admin.Inspection) {
	fmt.Fprintf(w, "%s\t%s held here\n", in.Name, humanBytes(in.LocalBytes))
	if len(in.Tags) > 0 {
		fmt.Fprintln(w, "\nTAG\tDIGEST\tFETCHED\tREGION\tPINNED")
		for _, t := range in.Tags {
			fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\n", t.Name, t.Digest, t.FetchedAt.Format(time.RFC3339), t.Region, yes(t.Pinned))
		}
	}
	fmt.Fprintln(w, "\nDIGEST\tKIND\tSIZE\tTIER\tLAST ACCESS\tPINNED\tREPOSITORIES")
	for _, c := range in.Content {
		var tiers []string
		if c.Local {
			tiers = append(tiers, "local")
		}
		if c.Global != nil && *c.Global {
			tiers = append(tiers, "global")
		}
		if len(tiers) == 0 {
			tiers = append(tiers, "-")
		}
		access := "-"
		if c.Accessed != nil {
			access = c.Accessed.Format(time.RFC3339)
		}
		fmt.Fprintf(w, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", c.Digest, c.Kind, humanBytes(c.Size), strings.Join(tiers, "+"), access,
			yes(c.Pinned), strings.Join(c.Holders, ","))
	}
}

func yes(b bool) string {
	if b {
		return "yes"
	}
	return ""
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
