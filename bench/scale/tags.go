package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"slices"
	"time"

	"github.com/edgeregistry/edge/bench/internal/benchkit"
	"github.com/edgeregistry/edge/localtier"
)

// listResult is the tag list of listRepo through the node's API.
type listResult struct {
	path   string
	first  time.Duration   // the first call: the origin's failures come first
	times  []time.Duration // the timed calls, after two more untimed ones
	tags   int
	bytes  int
	others float64 // cores other processes used during the timed calls
}

// listThroughAPI GETs /v2/<listRoute>/<listRepo>/tags/list from the node:
// the route's origin refuses connections, so the node answers from the
// tags its local tier holds (localtier's ListTags, a prefix scan of the
// index), which is what is measured. The first call, which meets the
// origin's failures before the route's breaker opens, is kept apart; two
// more warm up, then s.calls are timed. Every answer must list s.tags tags.
func listThroughAPI(ctx context.Context, n *node, s settings, others *benchkit.OtherCPU) (listResult, error) {
	res := listResult{path: "/v2/" + listRoute + "/" + listRepo + "/tags/list"}
	c := &http.Client{Timeout: time.Minute}
	defer c.CloseIdleConnections()
	var (
		w      benchkit.Window
		timing time.Time
	)
	for i := range s.calls + 3 {
		if i == 3 {
			w, timing = others.Begin(), time.Now()
		}
		t0 := time.Now()
		tags, size, err := getTags(ctx, c, n.api+res.path)
		took := time.Since(t0)
		if err != nil {
			return res, fmt.Errorf("GET %s: %w (log: %s)", res.path, err, n.log)
		}
		if tags != s.tags {
			return res, fmt.Errorf("GET %s: %d tags, want %d", res.path, tags, s.tags)
		}
		res.tags, res.bytes = tags, size
		switch {
		case i == 0:
			res.first = took
		case i >= 3:
			res.times = append(res.times, took)
		}
	}
	res.others = othersOver(ctx, w, timing)
	return res, nil
}

func getTags(ctx context.Context, c *http.Client, url string) (tags, size int, err error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return 0, 0, err
	}
	resp, err := c.Do(req)
	if err != nil {
		return 0, 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return 0, 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, 0, fmt.Errorf("%s: %s", resp.Status, short(body))
	}
	var list struct {
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(body, &list); err != nil {
		return 0, 0, err
	}
	return len(list.Tags), len(body), nil
}

// listInProcess times localtier's ListTags of listRepo on a freshly opened
// store, the reference for the API's figure: the first call, then calls
// more.
func listInProcess(ctx context.Context, store *localtier.Store, calls int) (times []time.Duration, first time.Duration, tags int, err error) {
	for i := range calls + 1 {
		t0 := time.Now()
		list, err := store.ListTags(ctx, listRoute, listRepo)
		took := time.Since(t0)
		if err != nil {
			return nil, 0, 0, err
		}
		tags = len(list)
		if i == 0 {
			first = took
		} else {
			times = append(times, took)
		}
	}
	return times, first, tags, nil
}

// median of durations; 0 for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

// quantile of durations (q in [0, 1]), nearest rank; 0 for none.
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	i := int(q*float64(len(s))+0.5) - 1
	return s[min(max(i, 0), len(s)-1)]
}
