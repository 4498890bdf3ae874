package agentproto

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
)

// Client calls an agent's API for the control plane.
type Client struct {
	baseURL string
	token   string
	http    *http.Client
	// patchHTTP has no timeout of its own: a patch waits for a model to load, which may take
	// as long as the agent's start timeout; the caller's context bounds it.
	patchHTTP *http.Client
}

// NewClient returns a client of the agent at baseURL (its advertised URL) with the node token.
func NewClient(baseURL, token string) *Client {
	return &Client{
		baseURL: strings.TrimSuffix(baseURL, "/"),
		token:   token,
		// Every other call is quick: starting is asynchronous and stopping waits at most
		// the grace period the caller gives, which the context bounds.
		http:      &http.Client{Timeout: 5 * time.Minute, Transport: tracing(http.DefaultTransport)},
		patchHTTP: &http.Client{Transport: tracing(http.DefaultTransport)},
	}
}

// tracing is the transport of every call: each is a client span whose traceparent the agent
// continues, so a trace runs from the activity into the agent. Over base, it takes the process's tracer
// provider as it is now, so it costs nothing when tracing is off.
func tracing(base http.RoundTripper) http.RoundTripper { return otelhttp.NewTransport(base) }

// WithTLS makes c trust cfg's certificate authorities when the agent's URL is https://;
// nil keeps the system's. It answers c.
func (c *Client) WithTLS(cfg *tls.Config) *Client {
	if cfg != nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.TLSClientConfig = cfg.Clone()
		c.http.Transport, c.patchHTTP.Transport = tracing(t), tracing(t)
	}
	return c
}

// ErrUnknownReplica is a replica ID the agent has never seen: the agent answers 404 for it.
var ErrUnknownReplica = errors.New("unknown replica")

// APIError is an agent's error answer.
type APIError struct {
	Status  int
	Code    string
	Message string
}

func (e *APIError) Error() string {
	return fmt.Sprintf("agent answered %d %s: %s", e.Status, e.Code, e.Message)
}

// Is lets errors.Is match ErrUnknownReplica on a 404 for a replica.
func (e *APIError) Is(target error) bool {
	return target == ErrUnknownReplica && e.Status == http.StatusNotFound
}

// Retryable says whether the same call may succeed later: not when the request itself is
// wrong (400), unauthorised (401) or impossible on this node (409).
func (e *APIError) Retryable() bool {
	switch e.Status {
	case http.StatusBadRequest, http.StatusUnauthorized, http.StatusConflict, http.StatusRequestEntityTooLarge:
		return false
	}
	return true
}

// Inventory returns the node's GPUs with health and assignments.
func (c *Client) Inventory(ctx context.Context) (InventoryResponse, error) {
	var out InventoryResponse
	return out, c.do(ctx, http.MethodGet, "/v1/inventory", nil, &out)
}

// StartReplica asks the agent to start a replica; calling it again with the same replica ID
// answers the replica as it is.
func (c *Client) StartReplica(ctx context.Context, req StartRequest) (Replica, error) {
	var out Replica
	return out, c.do(ctx, http.MethodPost, "/v1/replicas", req, &out)
}

// Replica returns one replica; an unknown one is ErrUnknownReplica.
func (c *Client) Replica(ctx context.Context, id string) (Replica, error) {
	var out Replica
	return out, c.do(ctx, http.MethodGet, "/v1/replicas/"+url.PathEscape(id), nil, &out)
}

// Replicas lists the node's replicas, newest first.
func (c *Client) Replicas(ctx context.Context) ([]Replica, error) {
	var out struct {
		Replicas []Replica `json:"replicas"`
	}
	return out.Replicas, c.do(ctx, http.MethodGet, "/v1/replicas", nil, &out)
}

// StopReplica stops a replica, giving it grace between SIGTERM and SIGKILL. An unknown
// replica is ErrUnknownReplica.
func (c *Client) StopReplica(ctx context.Context, id string, grace time.Duration) (Replica, error) {
	var out Replica
	path := fmt.Sprintf("/v1/replicas/%s?grace_seconds=%d", url.PathEscape(id), int(grace.Round(time.Second)/time.Second))
	return out, c.do(ctx, http.MethodDelete, path, nil, &out)
}

// PatchReplica writes a patch's files into a replica's package and has its model server take
// them, by hot reload or by a restart in place, answering once that is done. That can take as
// long as loading the model: only ctx bounds the call. An unknown replica is
// ErrUnknownReplica.
func (c *Client) PatchReplica(ctx context.Context, id string, req PatchRequest) (PatchResult, error) {
	var out PatchResult
	return out, c.doWith(ctx, c.patchHTTP, http.MethodPost, "/v1/replicas/"+url.PathEscape(id)+"/patch", req, &out)
}

func (c *Client) do(ctx context.Context, method, path string, body, out any) error {
	return c.doWith(ctx, c.http, method, path, body, out)
}

func (c *Client) doWith(ctx context.Context, hc *http.Client, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+path, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return err
	}
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error struct{ Code, Message string } `json:"error"`
		}
		if json.Unmarshal(data, &e) != nil || e.Error.Message == "" {
			e.Error.Message = strings.TrimSpace(string(data))
		}
		return &APIError{Status: resp.StatusCode, Code: e.Error.Code, Message: e.Error.Message}
	}
	if out == nil {
		return nil
	}
	if err := json.Unmarshal(data, out); err != nil {
		return fmt.Errorf("reading the agent's answer to %s %s: %w", method, path, err)
	}
	return nil
}

// Lines answers the replica's stamped log lines that q selects; an unknown replica (never
// started on this node, or forgotten an hour after it stopped) is ErrUnknownReplica.
func (c *Client) Lines(ctx context.Context, id string, q LinesQuery) ([]LogLine, error) {
	v := url.Values{}
	if !q.Since.IsZero() {
		v.Set("since", q.Since.UTC().Format(time.RFC3339Nano))
	}
	if !q.Until.IsZero() {
		v.Set("until", q.Until.UTC().Format(time.RFC3339Nano))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Direction != "" {
		v.Set("direction", q.Direction)
	}
	if q.MinLevel != "" {
		v.Set("min_level", q.MinLevel)
	}
	if q.Search != "" {
		v.Set("search", q.Search)
	}
	for _, s := range q.Includes {
		v.Add("includes", s)
	}
	for _, s := range q.Excludes {
		v.Add("excludes", s)
	}
	var out LinesResponse
	return out.Lines, c.do(ctx, http.MethodGet, "/v1/replicas/"+url.PathEscape(id)+"/lines?"+v.Encode(), nil, &out)
}
