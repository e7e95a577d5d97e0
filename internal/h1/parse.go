package h1

import (
	"net/http"
	"net/textproto"
	"net/url"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// leanRequestLine reads a request line of the lean subset: GET or HEAD, an
// origin-form target of visible ASCII, HTTP/1.1.
func leanRequestLine(line string) (method, target string, ok bool) {
	switch {
	case strings.HasPrefix(line, "GET /"):
		method, line = http.MethodGet, line[4:]
	case strings.HasPrefix(line, "HEAD /"):
		method, line = http.MethodHead, line[5:]
	default:
		return "", "", false
	}
	target, ok = strings.CutSuffix(line, " HTTP/1.1")
	if !ok {
		return "", "", false
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c >= 0x7f {
			return "", "", false
		}
	}
	return method, target, true
}

// leanField reads a header line of the lean subset: a token, a colon and a
// value without control bytes. It returns the canonical key and the value
// without the spaces around it.
func leanField(line string) (key, value string, ok bool) {
	name, value, ok := strings.Cut(line, ":")
	if !ok || name == "" {
		return "", "", false
	}
	for i := 0; i < len(name); i++ {
		if !tokenByte[name[i]] {
			return "", "", false
		}
	}
	value = strings.Trim(value, " \t")
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < ' ' && c != '\t' || c == 0x7f {
			return "", "", false
		}
	}
	return canonicalKey(name), value, true
}

// parseLean parses the header block of a request the lean loop takes and
// returns nil for any other: it accepts a strict subset of what
// http.ReadRequest does (FuzzParseLean holds it to that), and the fallback
// answers the rest, errors included. The subset: GET or HEAD, an
// origin-form target of visible ASCII, HTTP/1.1, one valid Host, header
// lines of a token, a colon and a value without control bytes, none of
// Content-Length, Transfer-Encoding, Expect or Upgrade, and no Connection
// value with "close" as a word but not as a list item (net/http closes
// after those; the fallback answers them).
//
// Every string of the request is a slice of one copy of the block: one
// allocation for all of them.
func parseLean(block []byte) *http.Request {
	text := string(block)
	line, rest, ok := cutLine(text)
	if !ok {
		return nil
	}
	method, target, ok := leanRequestLine(line)
	if !ok {
		return nil
	}
	lines := strings.Count(rest, "\n")
	req := &http.Request{
		Method:     method,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, lines),
		Body:       http.NoBody,
		RequestURI: target,
	}
	if req.URL = requestURL(target); req.URL == nil {
		return nil
	}
	values := make([]string, 0, lines) // backs every header's value slice
	hosts := 0
	for {
		line, rest, ok = cutLine(rest)
		if !ok {
			return nil
		}
		if line == "" {
			break
		}
		key, value, ok := leanField(line)
		if !ok {
			return nil
		}
		switch key {
		case "Content-Length", "Transfer-Encoding", "Expect", "Upgrade":
			return nil
		case "Host":
			hosts++
			req.Host = value
			continue
		case "Connection":
			listed := httpguts.HeaderValuesContainsToken([]string{value}, "close")
			if !listed && closeWord(value) {
				// net/http closes after the answer when "close" is a word
				// of the value ("0 Close"), not only an item of its list:
				// the fallback answers such a request, so that both agree.
				return nil
			}
			if listed {
				req.Close = true
			}
		}
		if vs, ok := req.Header[key]; ok {
			req.Header[key] = append(vs, value)
		} else {
			values = append(values, value)
			req.Header[key] = values[len(values)-1 : len(values) : len(values)]
		}
	}
	if rest != "" || hosts != 1 || req.Host == "" || !httpguts.ValidHostHeader(req.Host) {
		return nil
	}
	// As net/http does for HTTP/1.0 caches.
	if p := req.Header["Pragma"]; len(p) > 0 && p[0] == "no-cache" {
		if _, ok := req.Header["Cache-Control"]; !ok {
			req.Header["Cache-Control"] = []string{"no-cache"}
		}
	}
	return req
}

// closeWord reports whether "close" is a word of v, ASCII case aside,
// between spaces, tabs, commas or the ends: how net/http's response side
// reads a Connection header.
func closeWord(v string) bool {
	const token = "close"
	boundary := func(b byte) bool { return b == ' ' || b == ',' || b == '\t' }
	for i := 0; i+len(token) <= len(v); i++ {
		if (i > 0 && !boundary(v[i-1])) || (i+len(token) < len(v) && !boundary(v[i+len(token)])) {
			continue
		}
		if strings.EqualFold(v[i:i+len(token)], token) {
			return true
		}
	}
	return false
}

// cutLine splits s after its first line, which ends in CRLF or LF.
func cutLine(s string) (line, rest string, ok bool) {
	line, rest, ok = strings.Cut(s, "\n")
	if !ok {
		return "", "", false
	}
	return strings.TrimSuffix(line, "\r"), rest, true
}

// requestURL is url.ParseRequestURI, without its cost for the common
// target: a path of bytes that need no escaping, and a query.
func requestURL(target string) *url.URL {
	path, query, hasQuery := strings.Cut(target, "?")
	for i := 0; i < len(path); i++ {
		if !pathByte[path[i]] {
			u, err := url.ParseRequestURI(target)
			if err != nil {
				return nil
			}
			return u
		}
	}
	return &url.URL{Path: path, RawQuery: query, ForceQuery: hasQuery && query == ""}
}

// commonKeys holds the canonical form of the header names clients send,
// so that parsing them allocates nothing.
var commonKeys = func() map[string]string {
	m := map[string]string{}
	for _, k := range []string{"Accept", "Accept-Encoding", "Authorization", "Connection", "Host",
		"If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since", "Range",
		"User-Agent", "Docker-Distribution-Api-Version", "Content-Length", "Transfer-Encoding",
		"Expect", "Upgrade", "Cache-Control", "Pragma", "X-Forwarded-For"} {
		m[k] = k
	}
	return m
}()

func canonicalKey(name string) string {
	if k, ok := commonKeys[name]; ok {
		return k
	}
	return textproto.CanonicalMIMEHeaderKey(name)
}

// pathByte marks the bytes a path keeps unescaped in url.URL.EscapedPath.
var pathByte = alnumAnd("-._~/:@$&+,;=")

// tokenByte marks the bytes of an HTTP token (RFC 9110, section 5.6.2).
var tokenByte = alnumAnd("!#$%&'*+-.^_`|~")

// alnumAnd returns the set of ASCII letters and digits and the bytes of extra.
func alnumAnd(extra string) (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c], t[c-'a'+'A'] = true, true
	}
	for _, c := range extra {
		t[c] = true
	}
	return t
}
