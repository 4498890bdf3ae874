package client

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
)

// AsyncPredictRequest is the body of POST .../async_predict. Nil fields take the gateway's
// defaults (API.md, "Inference (gateway)").
type AsyncPredictRequest struct {
	// ModelInput is what the model is called with, as the body of a predict; required.
	ModelInput json.RawMessage `json:"model_input"`
	// WebhookEndpoint is where the result is posted; the workspace needs a webhook secret.
	WebhookEndpoint string `json:"webhook_endpoint,omitempty"`
	// Priority orders the queue: 0 first, 2 last.
	Priority *int `json:"priority,omitempty"`
	// MaxTimeInQueueSeconds is how long the request may wait for a replica before it
	// expires (10-259200).
	MaxTimeInQueueSeconds *int                  `json:"max_time_in_queue_seconds,omitempty"`
	InferenceRetryConfig  *InferenceRetryConfig `json:"inference_retry_config,omitempty"`
}

// InferenceRetryConfig says how often and how soon a failed call of the model is retried.
// Nil fields take the gateway's defaults.
type InferenceRetryConfig struct {
	MaxAttempts    *int `json:"max_attempts,omitempty"`     // 1-10
	InitialDelayMS *int `json:"initial_delay_ms,omitempty"` // 0-10000, doubled after each attempt
	MaxDelayMS     *int `json:"max_delay_ms,omitempty"`     // 0-60000, the longest wait
}

// AsyncRequestStatus is the gateway's answer to GET /async_request/{id}.
type AsyncRequestStatus struct {
	RequestID    string `json:"request_id"`
	ModelID      string `json:"model_id"`
	DeploymentID string `json:"deployment_id"`
	Environment  string `json:"environment"`
	// Status is QUEUED, IN_PROGRESS, SUCCEEDED, FAILED, EXPIRED, CANCELED or WEBHOOK_FAILED.
	Status modelplane.AsyncStatus `json:"status"`
	// WebhookStatus is PENDING, SUCCEEDED, FAILED, CANCELED or NO_WEBHOOK_PROVIDED.
	WebhookStatus modelplane.WebhookStatus `json:"webhook_status"`
	CreatedAt     time.Time                `json:"created_at"`
	StatusAt      time.Time                `json:"status_at"`
	Errors        []AsyncError             `json:"errors"`
	Attempts      int                      `json:"attempts"`
	// Output is the model's answer (JSON, or a JSON string when it was not JSON), present
	// only while the gateway keeps it: when there is no webhook or its delivery failed.
	Output json.RawMessage `json:"output,omitempty"`
}

// AsyncError is one error of an async request, such as MODEL_PREDICT_ERROR on attempt 2.
type AsyncError struct {
	Code    modelplane.ErrorCode `json:"code"`
	Message string               `json:"message"`
	Attempt int                  `json:"attempt"`
}

// AsyncCancelResult is the gateway's answer to DELETE /async_request/{id}: only a request
// that is still queued can be canceled; Message says why not otherwise.
type AsyncCancelResult struct {
	RequestID string `json:"request_id"`
	Canceled  bool   `json:"canceled"`
	Message   string `json:"message"`
}

// AsyncQueue is the gateway's answer to GET .../async_queue_status: the requests of the
// target's deployment that wait and that run.
type AsyncQueue struct {
	ModelID               string `json:"model_id"`
	DeploymentID          string `json:"deployment_id"`
	NumQueuedRequests     int    `json:"num_queued_requests"`
	NumInProgressRequests int    `json:"num_in_progress_requests"`
}

// AsyncPredict queues req for the model behind t, through the gateway at c's address (see
// Gateway), and returns the request's ID; the answer comes later, by webhook or from
// AsyncRequest. Errors are as in Predict: an *Error, with the Retry-After of a 429 in its
// text.
func (c *Client) AsyncPredict(ctx context.Context, modelID string, t Target, req AsyncPredictRequest) (string, error) {
	if len(bytes.TrimSpace(req.ModelInput)) == 0 {
		return "", errors.New("model_input is required")
	}
	if !json.Valid(req.ModelInput) {
		return "", errors.New("model_input is not valid JSON")
	}
	var out struct {
		RequestID string `json:"request_id"`
	}
	segments := append(append([]string{"models", modelID}, t.segments()...), "async_predict")
	if err := c.sendGateway(ctx, http.MethodPost, req, &out, segments...); err != nil {
		return "", err
	}
	if out.RequestID == "" {
		return "", fmt.Errorf("async predict on %s of model %s: the answer has no request_id", t, modelID)
	}
	return out.RequestID, nil
}

// AsyncRequest returns an async request's state, errors and, while it is kept, output.
func (c *Client) AsyncRequest(ctx context.Context, requestID string) (AsyncRequestStatus, error) {
	var out AsyncRequestStatus
	err := c.sendGateway(ctx, http.MethodGet, nil, &out, "async_request", requestID)
	return out, err
}

// CancelAsyncRequest cancels an async request that is still queued. A request that already
// runs or ended is not canceled: the answer says so, without an error.
func (c *Client) CancelAsyncRequest(ctx context.Context, requestID string) (AsyncCancelResult, error) {
	var out AsyncCancelResult
	err := c.sendGateway(ctx, http.MethodDelete, nil, &out, "async_request", requestID)
	return out, err
}

// AsyncQueueStatus returns how many async requests wait and run on the deployment behind t.
func (c *Client) AsyncQueueStatus(ctx context.Context, modelID string, t Target) (AsyncQueue, error) {
	var out AsyncQueue
	segments := append(append([]string{"models", modelID}, t.segments()...), "async_queue_status")
	err := c.sendGateway(ctx, http.MethodGet, nil, &out, segments...)
	return out, err
}

// WebhookSecret says whether the workspace has a webhook secret, and since when; the API
// never shows the secret again after it is made.
func (c *Client) WebhookSecret(ctx context.Context) (apiv1.WebhookSecretStatusV1, error) {
	var out apiv1.WebhookSecretStatusV1
	err := c.get(ctx, &out, "v1", "webhook_secret")
	return out, err
}

// RotateWebhookSecret makes the workspace's webhook secret, or replaces it, and returns it:
// this is the only time it is shown. Webhooks are signed with the new secret from then on.
func (c *Client) RotateWebhookSecret(ctx context.Context) (apiv1.WebhookSecretV1, error) {
	var out apiv1.WebhookSecretV1
	err := c.send(ctx, http.MethodPost, nil, &out, "v1", "webhook_secret")
	return out, err
}

// sendGateway is send for the gateway's async routes, whose 429 and 503 answers carry a
// Retry-After that a person should see.
func (c *Client) sendGateway(ctx context.Context, method string, in, out any, segments ...string) error {
	return c.sendWith(ctx, gatewayError, method, in, out, segments...)
}

// gatewayError is readError with the answer's Retry-After in its text.
func gatewayError(resp *http.Response) error {
	return withRetryAfter(readError(resp), resp.Header.Get("Retry-After"))
}
