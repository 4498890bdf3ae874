// Package client is a Go client for modelplane's management API (API.md), used by the
// command line and by tests. It sends and hands back the wire types of package apiv1, the
// ones the server answers with, so a field the server adds reaches callers without a copy
// here; it does not link the server itself.
package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"github.com/modelplane/modelplane/apiv1"
)

// maxErrorBody bounds how much of an error answer is read: enough for the JSON error shape
// or the start of a proxy's HTML page, never a runaway body.
const maxErrorBody = 64 << 10

// Client calls the management API with one API key. It is safe for concurrent use.
type Client struct {
	baseURL string
	apiKey  string
	// HTTPClient sends the requests; nil means http.DefaultClient. It has no overall
	// timeout by default because uploads of large packages legitimately take long: bound
	// calls with the context instead.
	HTTPClient *http.Client
}

// New returns a client for the API at baseURL (e.g. "http://127.0.0.1:8080") that sends
// apiKey as "Authorization: Api-Key <key>".
func New(baseURL, apiKey string) *Client {
	return &Client{baseURL: strings.TrimRight(baseURL, "/"), apiKey: apiKey}
}

// Error is an error answer from the API: its HTTP status and API.md's error code and
// message. Match it with errors.As to branch on Status or Code.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string {
	if e.Code == "" {
		return fmt.Sprintf("%s (HTTP %d)", e.Message, e.Status)
	}
	return fmt.Sprintf("%s (HTTP %d %s)", e.Message, e.Status, e.Code)
}

// Models lists the models of the key's workspace.
func (c *Client) Models(ctx context.Context) ([]apiv1.ModelV1, error) {
	var out apiv1.ModelListV1
	if err := c.get(ctx, &out, "v1", "models"); err != nil {
		return nil, err
	}
	return nonNil(out.Models), nil
}

// Model returns one model.
func (c *Client) Model(ctx context.Context, modelID string) (apiv1.ModelV1, error) {
	var out apiv1.ModelV1
	err := c.get(ctx, &out, "v1", "models", modelID)
	return out, err
}

// Deployments lists a model's deployments.
func (c *Client) Deployments(ctx context.Context, modelID string) ([]apiv1.DeploymentV1, error) {
	var out apiv1.DeploymentListV1
	if err := c.get(ctx, &out, "v1", "models", modelID, "deployments"); err != nil {
		return nil, err
	}
	return nonNil(out.Deployments), nil
}

// Deployment returns one deployment of a model; ref is its ID, or "development" or
// "production" for the deployment that currently has that role.
func (c *Client) Deployment(ctx context.Context, modelID, ref string) (apiv1.DeploymentV1, error) {
	var out apiv1.DeploymentV1
	err := c.get(ctx, &out, "v1", "models", modelID, "deployments", ref)
	return out, err
}

// Environments lists a model's environments, production first.
func (c *Client) Environments(ctx context.Context, modelID string) ([]apiv1.EnvironmentV1, error) {
	var out apiv1.EnvironmentListV1
	if err := c.get(ctx, &out, "v1", "models", modelID, "environments"); err != nil {
		return nil, err
	}
	return nonNil(out.Environments), nil
}

// Environment returns one environment of a model by name.
func (c *Client) Environment(ctx context.Context, modelID, name string) (apiv1.EnvironmentV1, error) {
	var out apiv1.EnvironmentV1
	err := c.get(ctx, &out, "v1", "models", modelID, "environments", name)
	return out, err
}

// UploadArchive uploads a model package (a tar.gz, as modelpkg.Pack writes it) and returns
// its content address. The body is streamed from r as it is read, so a package never has to
// fit in memory; the API answers the same ID for the same bytes however often they come.
func (c *Client) UploadArchive(ctx context.Context, r io.Reader) (apiv1.ArchiveV1, error) {
	var out apiv1.ArchiveV1
	err := c.do(ctx, http.MethodPost, "/v1/archives", r, "application/gzip", &out)
	return out, err
}

// get reads the resource at the path made of segments into out.
func (c *Client) get(ctx context.Context, out any, segments ...string) error {
	p, err := path(segments...)
	if err != nil {
		return err
	}
	return c.do(ctx, http.MethodGet, p, nil, "", out)
}

// do sends one request and decodes a 2xx answer into out, or any other into an *Error.
func (c *Client) do(ctx context.Context, method, p string, body io.Reader, contentType string, out any) error {
	return c.doWith(ctx, readError, method, p, body, contentType, out)
}

// doWith is do with the error of an answer that is not 2xx made by answerErr.
func (c *Client) doWith(ctx context.Context, answerErr func(*http.Response) error, method, p string, body io.Reader,
	contentType string, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, c.baseURL+p, body)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Api-Key "+c.apiKey)
	req.Header.Set("Accept", "application/json")
	if contentType != "" {
		req.Header.Set("Content-Type", contentType)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return answerErr(resp)
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, req.URL.Redacted(), err)
	}
	return nil
}

// readError turns an error answer into an *Error. A body that is not API.md's error shape
// (a proxy's page, a server that is not modelplane) still gives its status and the start of
// its text, so the user sees what answered.
func readError(resp *http.Response) error {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrorBody))
	var body apiv1.ErrorV1
	if err := json.Unmarshal(b, &body); err == nil && body.Error.Message != "" {
		return &Error{Status: resp.StatusCode, Code: body.Error.Code, Message: body.Error.Message}
	}
	msg := firstLine(string(b))
	if msg == "" {
		msg = http.StatusText(resp.StatusCode)
	}
	return &Error{Status: resp.StatusCode, Message: msg}
}

// firstLine returns the first non-blank line of s, cut to a length that fits a terminal.
func firstLine(s string) string {
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			if len(l) > 200 {
				l = l[:200] + "..."
			}
			return l
		}
	}
	return ""
}

// path joins segments into a URL path, escaping each so that an ID or name with "/", "?"
// or dots stays one segment instead of reaching another route. An empty segment would
// silently name the parent collection, so it is refused.
func path(segments ...string) (string, error) {
	var b strings.Builder
	for _, s := range segments {
		if s == "" {
			return "", fmt.Errorf("an ID or name may not be empty (in %s/)", b.String())
		}
		b.WriteByte('/')
		if strings.Trim(s, ".") == "" {
			b.WriteString(strings.ReplaceAll(s, ".", "%2E"))
			continue
		}
		b.WriteString(url.PathEscape(s))
	}
	return b.String(), nil
}

// nonNil makes an empty list encode as [] rather than null for callers that re-encode it.
func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// IsStatus reports whether err is an API answer with the given HTTP status.
func IsStatus(err error, status int) bool {
	var e *Error
	return errors.As(err, &e) && e.Status == status
}
