package admin

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
)

// maxAnswer bounds an answer of the admin API that the client reads whole:
// listings of a large node stay far below it.
const maxAnswer = 256 << 20

// Client calls a node's admin API.
type Client struct {
	// Base is the admin listener's URL, such as http://127.0.0.1:9102.
	Base  string
	Token string
	// HTTP is the client to use; nil means http.DefaultClient.
	HTTP *http.Client
}

// Repositories lists the repositories the node holds.
func (c *Client) Repositories(ctx context.Context) ([]Repository, error) {
	var out []Repository
	return out, c.call(ctx, http.MethodGet, "/admin/v1/repositories", nil, &out)
}

// Inspect describes name (see Service.Inspect).
func (c *Client) Inspect(ctx context.Context, name string, global bool) (*Inspection, error) {
	q := url.Values{"name": {name}}
	if global {
		q.Set("global", "true")
	}
	var out Inspection
	return &out, c.call(ctx, http.MethodGet, "/admin/v1/inspect?"+q.Encode(), nil, &out)
}

// Purge removes name (see Service.Purge).
func (c *Client) Purge(ctx context.Context, name string, global bool) (Purged, error) {
	var out Purged
	return out, c.call(ctx, http.MethodPost, "/admin/v1/purge", map[string]any{"name": name, "global": global}, &out)
}

// Pin pins name and returns the digests pinned.
func (c *Client) Pin(ctx context.Context, name string) (PinInfo, error) {
	var out PinInfo
	return out, c.call(ctx, http.MethodPost, "/admin/v1/pins", map[string]any{"name": name}, &out)
}

// Unpin drops the pin of name.
func (c *Client) Unpin(ctx context.Context, name string) error {
	return c.call(ctx, http.MethodDelete, "/admin/v1/pins?"+url.Values{"name": {name}}.Encode(), nil, nil)
}

// Pins lists the pins.
func (c *Client) Pins(ctx context.Context) ([]PinInfo, error) {
	var out []PinInfo
	return out, c.call(ctx, http.MethodGet, "/admin/v1/pins", nil, &out)
}

// Prefetch asks the node to prefetch, handing each event to on as it
// comes, and returns the summary.
func (c *Client) Prefetch(ctx context.Context, req PrefetchRequest, on func(Event)) (Summary, error) {
	resp, err := c.do(ctx, http.MethodPost, "/admin/v1/prefetch", req)
	if err != nil {
		return Summary{}, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var last struct {
			Summary *Summary `json:"summary"`
			Error   string   `json:"error"`
		}
		var ev Event
		if err := errors.Join(json.Unmarshal(sc.Bytes(), &last), json.Unmarshal(sc.Bytes(), &ev)); err != nil {
			if cerr := ctx.Err(); cerr != nil { // a line cut short by the caller leaving
				return Summary{}, fmt.Errorf("admin API: %w", cerr)
			}
			return Summary{}, fmt.Errorf("admin API: %w", err)
		}
		if last.Summary != nil {
			if last.Error != "" {
				return *last.Summary, fmt.Errorf("admin API: %s", last.Error)
			}
			return *last.Summary, nil
		}
		on(ev)
	}
	if err := sc.Err(); err != nil {
		return Summary{}, fmt.Errorf("admin API: %w", err)
	}
	return Summary{}, fmt.Errorf("admin API: the prefetch ended without a summary")
}

func (c *Client) call(ctx context.Context, method, path string, body, out any) error {
	resp, err := c.do(ctx, method, path, body)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		return nil
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxAnswer)).Decode(out); err != nil {
		return fmt.Errorf("admin API: %w", err)
	}
	return nil
}

// do sends a request and returns a successful response; an error answer
// becomes an error with the API's message.
func (c *Client) do(ctx context.Context, method, path string, body any) (*http.Response, error) {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return nil, err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(c.Base, "/")+path, rd)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Authorization", "Bearer "+c.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&e) != nil || e.Error == "" {
		e.Error = resp.Status
	}
	return nil, &APIError{Status: resp.StatusCode, Message: e.Error}
}

// APIError is an error answer of the admin API.
type APIError struct {
	Status  int
	Message string
}

func (e *APIError) Error() string { return fmt.Sprintf("admin API: %d: %s", e.Status, e.Message) }
