package h1

import (
	"bufio"
	"bytes"
	"net/http"
	"reflect"
	"testing"

	"golang.org/x/net/http/httpguts"
)

var parseSeeds = []string{
	"GET /v2/ HTTP/1.1\r\nHost: edge\r\n\r\n",
	"GET /v2/library/app/manifests/latest?ns=docker.io HTTP/1.1\r\nHost: 127.0.0.1:5000\r\nUser-Agent: containerd/2.0\r\nAccept: application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json\r\nAccept: */*\r\n\r\n",
	"HEAD /v2/a/b/blobs/sha256:00 HTTP/1.1\r\nhost: x\r\naccept-encoding: gzip\r\nConnection: keep-alive, close\r\n\r\n",
	"GET /v2/a/tags/list?n=10&last=x HTTP/1.1\nHost: x\nPragma: no-cache\n\n",
	"GET /v2/%61/manifests/v1 HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a?? HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a? HTTP/1.1\r\nHost: x\r\nRange: bytes=0-10\r\n\r\n",
	"GET /(x)!*' HTTP/1.1\r\nHost: x\r\nX-Empty:\r\n\r\n",
	"GET //x/y HTTP/1.1\r\nHost: [::1]:5000\r\n\r\n",
	"GET /a#frag HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\n folded\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n",
	"GET http://x/a HTTP/1.1\r\nHost: x\r\n\r\n",
	"PUT /a HTTP/1.1\r\nHost: x\r\n\r\n",
	"GET /a HTTP/1.0\r\nHost: x\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nBad Name: 1\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nV: a\x01b\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\ncontent-length: 5\r\n\r\n",
	"GET /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
}

// FuzzParseLean holds the lean parser to net/http's: a request it takes must
// be one net/http's server takes too, parsed the same way.
func FuzzParseLean(f *testing.F) {
	for _, s := range parseSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n := blockEnd(data)
		if n == 0 {
			return
		}
		block := data[:n]
		got := parseLean(block)
		if got == nil {
			return
		}
		want, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(block)))
		if err != nil {
			t.Fatalf("the lean parser took %q, net/http refuses it: %v", block, err)
		}
		if !httpguts.ValidHostHeader(want.Host) || want.Host == "" {
			t.Fatalf("the lean parser took %q with Host %q, net/http's server refuses it", block, want.Host)
		}
		for k, vs := range want.Header {
			for _, v := range vs {
				if !httpguts.ValidHeaderFieldName(k) || !httpguts.ValidHeaderFieldValue(v) {
					t.Fatalf("the lean parser took %q, net/http's server refuses header %q: %q", block, k, v)
				}
			}
		}
		if got.Method != want.Method || got.RequestURI != want.RequestURI || got.Host != want.Host ||
			got.Close != want.Close || got.ProtoMajor != want.ProtoMajor || got.ProtoMinor != want.ProtoMinor ||
			want.Body != http.NoBody || want.ContentLength != 0 || len(want.TransferEncoding) != 0 {
			t.Fatalf("%q: lean %s %s host %q close %v; net/http %s %s host %q close %v length %d",
				block, got.Method, got.RequestURI, got.Host, got.Close,
				want.Method, want.RequestURI, want.Host, want.Close, want.ContentLength)
		}
		if !reflect.DeepEqual(got.URL, want.URL) {
			t.Fatalf("%q: URL %#v, net/http %#v", block, got.URL, want.URL)
		}
		if !reflect.DeepEqual(got.Header, want.Header) {
			t.Fatalf("%q: header %v, net/http %v", block, got.Header, want.Header)
		}
	})
}

func TestParseLeanTakesClientRequests(t *testing.T) {
	t.Parallel()
	for i, s := range parseSeeds[:10] {
		if parseLean([]byte(s)) == nil {
			t.Errorf("seed %d is left to the fallback: %q", i, s)
		}
	}
	for i, s := range parseSeeds[10:] {
		if parseLean([]byte(s)) != nil {
			t.Errorf("seed %d is taken, it must go to the fallback: %q", i+10, s)
		}
	}
}
