package main

import (
	"slices"
	"testing"
)

// These cover the harness's own parsing and arithmetic; the measurement
// itself runs only through `go run ./bench`.

func TestParseWrk(t *testing.T) {
	t.Parallel()
	out := []byte(`Running 3s test @ http://127.0.0.1:1/v2/library/bench/manifests/latest
  2 threads and 64 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency     1.12ms    2.01ms  40.00ms   92.00%
    Req/Sec    30.12k     3.01k   38.00k    70.00%
  180000 requests in 3.00s, 120.00MB read
  Socket errors: connect 0, read 3, write 0, timeout 0
  Non-2xx or 3xx responses: 12
Requests/sec:  60012.34
Transfer/sec:     40.00MB
`)
	r, err := parseWrk(out)
	if err != nil {
		t.Fatal(err)
	}
	if r.rps != 60012.34 || r.non2xx != 12 || r.sockErrs != "Socket errors: connect 0, read 3, write 0, timeout 0" {
		t.Errorf("parseWrk = %+v", r)
	}
	if _, err := parseWrk([]byte("unable to connect")); err == nil {
		t.Error("parseWrk of a failed run: no error")
	}
}

func TestPick(t *testing.T) {
	t.Parallel()
	known := []string{"a", "b", "c"}
	for _, tc := range []struct {
		in   string
		want []string
		err  bool
	}{
		{in: "all", want: known},
		{in: "c,a", want: []string{"a", "c"}},
		{in: "b, c", want: []string{"b", "c"}},
		{in: "d", err: true},
	} {
		got, err := pick(tc.in, known)
		if (err != nil) != tc.err || !slices.Equal(got, tc.want) {
			t.Errorf("pick(%q) = %v, %v; want %v (error %v)", tc.in, got, err, tc.want, tc.err)
		}
	}
}

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   []float64
		want float64
	}{
		{nil, 0},
		{[]float64{3}, 3},
		{[]float64{5, 1, 3}, 3},
		{[]float64{4, 1, 3, 2}, 2.5},
	} {
		if got := median(tc.in); got != tc.want {
			t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
		}
	}
}

func TestCellRatio(t *testing.T) {
	t.Parallel()
	res := map[string]*sysResult{"direct": newSysResult(), "edge": newSysResult(), "down": newSysResult()}
	res["direct"].v[mColdWall] = 2
	res["edge"].v[mColdWall] = 2.2
	res["down"].fail(scCold, errTest("refused"))
	r := row{scenario: scCold, metric: mColdWall, format: func(v float64) string { return "x" }, ratioSys: "direct", ratioMetric: mColdWall}
	for sys, want := range map[string]string{"direct": "x", "edge": "x (1.10×)", "down": "failed"} {
		if got := cell(r, sys, res); got != want {
			t.Errorf("cell(%s) = %q, want %q", sys, got, want)
		}
	}
}

type errTest string

func (e errTest) Error() string { return string(e) }
