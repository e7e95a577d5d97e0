package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
)

// env is what every system is started against.
type env struct {
	origin      *origin
	endpoints   map[string]*endpoint // each system's way to the origin, by name
	content     *content
	registryBin string
	edgeBin     string
	workDir     string
	others      *benchkit.OtherCPU
}

// instance is one running system under test.
type instance struct {
	url   string
	procs []*benchkit.Proc
}

func (in *instance) peakRSSKiB() int64 {
	var n int64
	for _, p := range in.procs {
		n += p.PeakRSSKiB()
	}
	return n
}

// cpuTicks is the CPU time the instance's processes have used, in clock ticks.
func (in *instance) cpuTicks() int64 {
	var n int64
	for _, p := range in.procs {
		n += p.CPUTicks()
	}
	return n
}

func (in *instance) stop() {
	for _, p := range in.procs {
		p.Stop()
	}
}

// system is a server the scenarios are run against.
type system struct {
	name string
	// caches is true for the pull-through caches: they start cold, count
	// origin requests and take a tag TTL.
	caches bool
	// start launches a fresh instance in its own empty directory, in front
	// of the origin at originURL; tagTTL is how long a tag stays fresh where
	// the system has such a setting.
	start func(ctx context.Context, e *env, dir, originURL string, tagTTL time.Duration) (*instance, error)
}

var allSystems = []system{
	{name: "direct", start: startDirect},
	{name: "edge", caches: true, start: startEdge},
	{name: "distribution", caches: true, start: startDistribution},
	{name: "nginx-cache", caches: true, start: startNginxCache},
	{name: "nginx-static", start: startNginxStatic},
}

// startDirect is the origin itself, through the counting proxy.
func startDirect(_ context.Context, _ *env, _, originURL string, _ time.Duration) (*instance, error) {
	return &instance{url: originURL}, nil
}

func startEdge(ctx context.Context, e *env, dir, originURL string, tagTTL time.Duration) (*instance, error) {
	if e.edgeBin == "" {
		return nil, fmt.Errorf("edge binary not built")
	}
	cfg := filepath.Join(dir, "edge.yaml")
	y := fmt.Sprintf(`region: bench
listen: "127.0.0.1:0"
admin_listen: "127.0.0.1:0"
data_dir: %s
routes:
  - name: docker.io
    origin: %s
    default: true
    tag_ttl: %s
global:
  backend: none
`, filepath.Join(dir, "data"), originURL, seconds(tagTTL))
	if err := os.WriteFile(cfg, []byte(y), 0o644); err != nil {
		return nil, err
	}
	p, addrs, err := benchkit.StartEdge(ctx, "edge", e.edgeBin, cfg, filepath.Join(dir, "edge.log"), 30*time.Second, "api")
	if err != nil {
		return nil, err
	}
	in := &instance{url: "http://" + addrs["api"], procs: []*benchkit.Proc{p}}
	if err := benchkit.WaitHTTP(ctx, p, in.url+"/v2/", 30*time.Second); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

// startDistribution is distribution's registry in proxy mode. It has no tag
// TTL: it asks the origin about a tag on every request.
func startDistribution(ctx context.Context, e *env, dir, originURL string, _ time.Duration) (*instance, error) {
	p, u, err := benchkit.StartRegistry(ctx, "distribution", e.registryBin, dir, func(addr, storage string) string {
		return registryConfig(addr, storage, originURL)
	})
	if err != nil {
		return nil, err
	}
	return &instance{url: u, procs: []*benchkit.Proc{p}}, nil
}

// nginxCommon is the part of both nginx configurations that is not about
// what they serve: two workers (one per core), sendfile, long keep-alive,
// no access log, every path inside dir.
const nginxCommon = `user root;
worker_processes auto;
daemon off;
pid {{dir}}/nginx.pid;
error_log {{dir}}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  keepalive_timeout 120s;
  types {}
  default_type application/octet-stream;
  client_body_temp_path {{dir}}/tmp/body;
  proxy_temp_path {{dir}}/tmp/proxy;
  fastcgi_temp_path {{dir}}/tmp/fastcgi;
  uwsgi_temp_path {{dir}}/tmp/uwsgi;
  scgi_temp_path {{dir}}/tmp/scgi;
{{http}}
}
`

// nginxCache is nginx as users set it up as a registry cache: proxy_cache
// keyed by URI and Accept, one filler per key (proxy_cache_lock), 200s kept
// for the tag TTL, expired entries revalidated with conditional requests, a
// keep-alive upstream.
const nginxCache = `  upstream origin {
    server {{origin}};
    keepalive 64;
  }
  proxy_cache_path {{dir}}/cache levels=1:2 keys_zone=registry:16m max_size=20g inactive=1h use_temp_path=off;
  server {
    listen 127.0.0.1:{{port}};
    location /v2/ {
      proxy_pass http://origin;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Host $http_host;
      proxy_cache registry;
      proxy_cache_key $request_uri$http_accept;
      proxy_cache_lock on;
      proxy_cache_lock_timeout 5m;
      proxy_cache_lock_age 5m;
      proxy_cache_valid 200 {{ttl}};
      proxy_cache_revalidate on;
      proxy_ignore_headers Cache-Control Expires;
    }
  }
`

// nginxStatic serves the seeded files from disk under the same URLs: the
// limit for sending these bytes from this machine.
const nginxStatic = `  server {
    listen 127.0.0.1:{{port}};
    root {{root}};
    location /v2/ { }
    location ~ /manifests/ { default_type application/vnd.oci.image.manifest.v1+json; }
  }
`

func startNginxCache(ctx context.Context, _ *env, dir, originURL string, tagTTL time.Duration) (*instance, error) {
	return startNginx(ctx, dir, nginxCache, strings.NewReplacer(
		"{{origin}}", strings.TrimPrefix(originURL, "http://"), "{{ttl}}", seconds(tagTTL)))
}

func startNginxStatic(ctx context.Context, e *env, dir, _ string, _ time.Duration) (*instance, error) {
	root := filepath.Join(dir, "www")
	blobs := filepath.Join(root, "v2", repo, "blobs")
	manifests := filepath.Join(root, "v2", repo, "manifests")
	for _, d := range []string{blobs, manifests} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	c := e.content
	for _, b := range []blob{c.big, c.small, c.config} {
		if err := os.Link(b.path, filepath.Join(blobs, b.digest)); err != nil {
			return nil, err
		}
	}
	if err := os.WriteFile(filepath.Join(manifests, tag), c.manifest, 0o644); err != nil {
		return nil, err
	}
	return startNginx(ctx, dir, nginxStatic, strings.NewReplacer("{{root}}", root))
}

func startNginx(ctx context.Context, dir, server string, vars *strings.Replacer) (*instance, error) {
	port, err := benchkit.FreePort()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Join(dir, "tmp"), 0o755); err != nil {
		return nil, err
	}
	conf := strings.Replace(nginxCommon, "{{http}}", vars.Replace(server), 1)
	conf = strings.NewReplacer("{{dir}}", dir, "{{port}}", fmt.Sprint(port)).Replace(conf)
	path := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := benchkit.Start("nginx", filepath.Join(dir, "nginx.log"), nil, nil,
		"nginx", "-p", dir, "-c", path, "-e", filepath.Join(dir, "error.log"))
	if err != nil {
		return nil, err
	}
	in := &instance{url: fmt.Sprintf("http://127.0.0.1:%d", port), procs: []*benchkit.Proc{p}}
	if err := benchkit.WaitHTTP(ctx, p, in.url+"/", 30*time.Second); err != nil {
		in.stop()
		return nil, err
	}
	return in, nil
}

// seconds writes d as whole seconds, which every config here parses.
func seconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(d/time.Second))
}
