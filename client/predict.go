package client

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
)

// Target is what a prediction goes to: production, an environment, the development
// deployment or one deployment (API.md, "Inference (gateway)"). The zero value is
// production.
type Target struct {
	kind string // "" (production), "environments", "development" or "deployment": the gateway's path segment
	name string // the environment's name or the deployment's ID
}

// ProductionTarget is the deployment that serves a model's production environment.
func ProductionTarget() Target { return Target{} }

// EnvironmentTarget is the deployment that serves the named environment; during a
// promotion the gateway splits traffic between it and the candidate.
func EnvironmentTarget(name string) Target { return Target{kind: "environments", name: name} }

// DevelopmentTarget is a model's development deployment.
func DevelopmentTarget() Target { return Target{kind: "development"} }

// DeploymentTarget is one deployment by its ID, whatever environment it serves.
func DeploymentTarget(id string) Target { return Target{kind: "deployment", name: id} }

// String names the target for messages: "production", "environment staging",
// "development", "deployment q4z8m2xw".
func (t Target) String() string {
	switch t.kind {
	case "":
		return "production"
	case "environments":
		return "environment " + t.name
	case "development":
		return "development"
	}
	return t.kind + " " + t.name
}

// segments is the target's part of the gateway's path.
func (t Target) segments() []string {
	switch t.kind {
	case "":
		return []string{"production"}
	case "development":
		return []string{"development"}
	}
	return []string{t.kind, t.name}
}

// Predict sends body as is to the model behind t, through the gateway at c's address (see
// Gateway), and returns the model's answer as is, read whole. An answer that is not 2xx is
// an *Error (match it with errors.As or IsStatus), with the Retry-After of a 503 or 429 added
// to its text. Use PredictStream for answers that should be read as they come.
func (c *Client) Predict(ctx context.Context, modelID string, t Target, body []byte) ([]byte, error) {
	rc, _, err := c.PredictStream(ctx, modelID, t, body, "")
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	b, err := io.ReadAll(rc)
	if err != nil {
		return nil, fmt.Errorf("predict on %s of model %s: reading the answer: %w", t, modelID, err)
	}
	return b, nil
}

// PredictStream is Predict for answers that arrive in pieces, such as text/event-stream:
// it returns the answer's body unread, for the caller to read as it arrives and close, with
// its headers (Content-Type says what came). accept, when not empty, is sent as the Accept
// header. Errors are as in Predict.
func (c *Client) PredictStream(ctx context.Context, modelID string, t Target, body []byte, accept string) (io.ReadCloser, http.Header, error) {
	p, err := path(append(append([]string{"models", modelID}, t.segments()...), "predict")...)
	if err != nil {
		return nil, nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.baseURL+p, bytes.NewReader(body))
	if err != nil {
		return nil, nil, err
	}
	req.Header.Set("Authorization", "Api-Key "+c.apiKey)
	req.Header.Set("Content-Type", "application/json")
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	hc := c.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, nil, err
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		defer resp.Body.Close()
		return nil, resp.Header, withRetryAfter(readError(resp), resp.Header.Get("Retry-After"))
	}
	return resp.Body, resp.Header, nil
}

// Gateway returns a copy of c, with its key and HTTP client, for the inference gateway at
// baseURL (MODELPLANE_GATEWAY_URL in production). An empty baseURL gives c itself: in
// `modelplane dev` the API and the gateway share one address, so c.Predict needs no
// Gateway. The copy sends every call to baseURL; keep c for the management API.
func (c *Client) Gateway(baseURL string) *Client {
	baseURL = strings.TrimRight(strings.TrimSpace(baseURL), "/")
	if baseURL == "" {
		return c
	}
	g := *c
	g.baseURL = baseURL
	return &g
}

// withRetryAfter adds the gateway's Retry-After to err's text, so that a person sees when
// to try again; errors.As still finds the *Error inside.
func withRetryAfter(err error, retryAfter string) error {
	retryAfter = strings.TrimSpace(retryAfter)
	if retryAfter == "" {
		return err
	}
	var apiErr *Error
	if !errors.As(err, &apiErr) {
		return err
	}
	if s, convErr := strconv.Atoi(retryAfter); convErr == nil {
		return fmt.Errorf("%w; retry in %ds", err, s)
	}
	return fmt.Errorf("%w; retry after %s", err, retryAfter)
}
