// Package origintest gives tests a real origin registry and a fault-injecting
// proxy in front of it.
//
// NewRegistry starts distribution's registry in-process (storage in t.TempDir) on
// 127.0.0.1, optionally behind Docker Hub style token auth (WithTokenAuth: a
// 401 challenge, a token server that checks Basic credentials and issues
// scoped, short-lived JWTs, and counts them) or htpasswd Basic auth
// (WithBasicAuth).
//
// NewProxy puts an httputil.ReverseProxy in front of any origin. It logs and
// counts every request by method and kind (manifest, blob, tags, other) and
// injects faults that a test sets and clears at run time from any goroutine:
// 429 with Retry-After, 5xx, dropped connections, truncated, corrupted or
// throttled bodies, added latency, and gates that hold a response until the
// test releases it. DeadURL and BlackholeURL give addresses of origins that
// refuse connections or never answer.
//
// PushImage, PushIndex, PushBlob and RandomBlob put content into a registry
// with go-containerregistry; they use the registry's credentials when it has
// auth on, also when they are handed the URL of a Proxy in front of it.
//
// Everything is stopped with t.Cleanup.
package origintest
