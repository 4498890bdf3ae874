package client_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/store"
)

func intPtr(n int) *int { return &n }

func TestAsyncPredict_EachTargetPostsTheRequestToItsPath(t *testing.T) {
	srv, seen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"request_id": "abcdefgh12345678"}`)
	})
	c := client.New(srv.URL+"/", "mp_key")
	for _, tc := range []struct {
		target client.Target
		path   string
	}{
		{client.ProductionTarget(), "/models/q4z8m2xw/production/async_predict"},
		{client.EnvironmentTarget("staging"), "/models/q4z8m2xw/environments/staging/async_predict"},
		{client.DevelopmentTarget(), "/models/q4z8m2xw/development/async_predict"},
		{client.DeploymentTarget("d1d2d3d4"), "/models/q4z8m2xw/deployment/d1d2d3d4/async_predict"},
	} {
		id, err := c.AsyncPredict(context.Background(), "q4z8m2xw", tc.target, client.AsyncPredictRequest{ModelInput: json.RawMessage(`{"prompt": "hi"}`)})
		require.NoError(t, err, tc.target.String())
		require.Equal(t, "abcdefgh12345678", id)
		got := <-seen
		require.Equal(t, gatewayRequest{method: http.MethodPost, path: tc.path, auth: "Api-Key mp_key",
			contentType: "application/json", accept: "application/json", body: `{"model_input":{"prompt":"hi"}}`}, got,
			"%s: only model_input is sent when nothing else is set", tc.target)
	}
}

func TestAsyncPredict_SendsEveryOptionIncludingZeroes(t *testing.T) {
	srv, seen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{"request_id": "r1"}`)
	})
	_, err := client.New(srv.URL, "k").AsyncPredict(context.Background(), "q4z8m2xw", client.ProductionTarget(), client.AsyncPredictRequest{
		ModelInput: json.RawMessage(`[1, 2]`), WebhookEndpoint: "https://hooks.example.com/h",
		Priority: intPtr(0), MaxTimeInQueueSeconds: intPtr(60),
		InferenceRetryConfig: &client.InferenceRetryConfig{MaxAttempts: intPtr(2), InitialDelayMS: intPtr(0), MaxDelayMS: intPtr(500)},
	})
	require.NoError(t, err)
	require.JSONEq(t, `{"model_input": [1, 2], "webhook_endpoint": "https://hooks.example.com/h", "priority": 0,
		"max_time_in_queue_seconds": 60, "inference_retry_config": {"max_attempts": 2, "initial_delay_ms": 0, "max_delay_ms": 500}}`,
		(<-seen).body, "priority 0 and a zero delay are values, not defaults")
}

func TestAsyncPredict_MissingOrInvalidInputIsRefusedWithoutARequest(t *testing.T) {
	srv, seen := fakeGateway(t, func(http.ResponseWriter, *http.Request) {})
	c := client.New(srv.URL, "k")
	_, err := c.AsyncPredict(context.Background(), "q4z8m2xw", client.ProductionTarget(), client.AsyncPredictRequest{})
	require.EqualError(t, err, "model_input is required")
	_, err = c.AsyncPredict(context.Background(), "q4z8m2xw", client.ProductionTarget(), client.AsyncPredictRequest{ModelInput: json.RawMessage(`{x`)})
	require.EqualError(t, err, "model_input is not valid JSON")
	_, err = c.AsyncPredict(context.Background(), "q4z8m2xw", client.EnvironmentTarget(""), client.AsyncPredictRequest{ModelInput: json.RawMessage(`1`)})
	require.ErrorContains(t, err, "may not be empty")
	require.Empty(t, seen, "no request may be sent")
}

func TestAsyncPredict_RateLimitSaysWhenToRetry(t *testing.T) {
	srv, _ := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "7")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error": {"code": "rate_limited", "message": "too many open async requests"}}`)
	})
	_, err := client.New(srv.URL, "k").AsyncPredict(context.Background(), "q4z8m2xw", client.ProductionTarget(),
		client.AsyncPredictRequest{ModelInput: json.RawMessage(`{}`)})
	require.EqualError(t, err, "too many open async requests (HTTP 429 rate_limited); retry in 7s")
	e := apiError(t, err)
	require.Equal(t, client.Error{Status: 429, Code: "rate_limited", Message: "too many open async requests"}, *e)
}

func TestAsyncPredict_UnprocessableWebhookKeepsTheGatewaysMessage(t *testing.T) {
	srv, _ := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusUnprocessableEntity)
		_, _ = io.WriteString(w, `{"error": {"code": "unprocessable", "message": "webhook_endpoint: the workspace has no webhook secret"}}`)
	})
	_, err := client.New(srv.URL, "k").AsyncPredict(context.Background(), "q4z8m2xw", client.ProductionTarget(),
		client.AsyncPredictRequest{ModelInput: json.RawMessage(`{}`), WebhookEndpoint: "https://x.example/h"})
	require.True(t, client.IsStatus(err, http.StatusUnprocessableEntity), "got %v", err)
	require.Contains(t, err.Error(), "webhook_endpoint: the workspace has no webhook secret")
}

func TestAsyncPredict_AnswerWithoutARequestIDIsAnError(t *testing.T) {
	srv, _ := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusCreated)
		_, _ = io.WriteString(w, `{}`)
	})
	_, err := client.New(srv.URL, "k").AsyncPredict(context.Background(), "q4z8m2xw", client.ProductionTarget(),
		client.AsyncPredictRequest{ModelInput: json.RawMessage(`{}`)})
	require.ErrorContains(t, err, "no request_id")
}

func TestAsyncRequest_ReadsTheStatusWithErrorsAndOutput(t *testing.T) {
	srv, seen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"request_id": "r/1", "model_id": "q4z8m2xw", "deployment_id": "d1d2d3d4",
			"environment": "production", "status": "SUCCEEDED", "webhook_status": "NO_WEBHOOK_PROVIDED",
			"created_at": "2025-01-02T03:04:05Z", "status_at": "2025-01-02T03:04:09.5Z",
			"errors": [{"code": "MODEL_PREDICT_ERROR", "message": "500 from the model", "attempt": 1}],
			"attempts": 2, "output": {"text": "hello"}}`)
	})
	st, err := client.New(srv.URL, "mp_key").AsyncRequest(context.Background(), "r/1")
	require.NoError(t, err)
	got := <-seen
	require.Equal(t, http.MethodGet, got.method)
	require.Equal(t, "/async_request/r%2F1", got.path, "the ID stays one path segment")
	require.Equal(t, "Api-Key mp_key", got.auth)
	require.Empty(t, got.body)
	require.Equal(t, client.AsyncRequestStatus{
		RequestID: "r/1", ModelID: "q4z8m2xw", DeploymentID: "d1d2d3d4", Environment: "production",
		Status: "SUCCEEDED", WebhookStatus: "NO_WEBHOOK_PROVIDED",
		CreatedAt: time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC), StatusAt: time.Date(2025, 1, 2, 3, 4, 9, 5e8, time.UTC),
		Errors:   []client.AsyncError{{Code: "MODEL_PREDICT_ERROR", Message: "500 from the model", Attempt: 1}},
		Attempts: 2, Output: json.RawMessage(`{"text": "hello"}`),
	}, st)
}

func TestAsyncRequest_UnknownIDIsNotFound(t *testing.T) {
	srv, _ := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error": {"code": "not_found", "message": "async request \"nope\" not found"}}`)
	})
	_, err := client.New(srv.URL, "k").AsyncRequest(context.Background(), "nope")
	require.Equal(t, client.Error{Status: 404, Code: "not_found", Message: `async request "nope" not found`}, *apiError(t, err))
	_, err = client.New(srv.URL, "k").AsyncRequest(context.Background(), "")
	require.ErrorContains(t, err, "may not be empty")
}

func TestCancelAsyncRequest_DeletesAndReadsTheOutcome(t *testing.T) {
	srv, seen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"request_id": "r1", "canceled": false, "message": "request is IN_PROGRESS; only QUEUED requests can be canceled"}`)
	})
	res, err := client.New(srv.URL, "k").CancelAsyncRequest(context.Background(), "r1")
	require.NoError(t, err, "a request that cannot be canceled is an answer, not an error")
	require.Equal(t, client.AsyncCancelResult{RequestID: "r1", Canceled: false,
		Message: "request is IN_PROGRESS; only QUEUED requests can be canceled"}, res)
	got := <-seen
	require.Equal(t, http.MethodDelete, got.method)
	require.Equal(t, "/async_request/r1", got.path)
}

func TestAsyncQueueStatus_EachTargetReadsItsPath(t *testing.T) {
	srv, seen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"model_id": "q4z8m2xw", "deployment_id": "d1d2d3d4", "num_queued_requests": 5, "num_in_progress_requests": 2}`)
	})
	c := client.New(srv.URL, "k")
	for _, tc := range []struct {
		target client.Target
		path   string
	}{
		{client.ProductionTarget(), "/models/q4z8m2xw/production/async_queue_status"},
		{client.EnvironmentTarget("staging"), "/models/q4z8m2xw/environments/staging/async_queue_status"},
		{client.DevelopmentTarget(), "/models/q4z8m2xw/development/async_queue_status"},
		{client.DeploymentTarget("d1d2d3d4"), "/models/q4z8m2xw/deployment/d1d2d3d4/async_queue_status"},
	} {
		q, err := c.AsyncQueueStatus(context.Background(), "q4z8m2xw", tc.target)
		require.NoError(t, err, tc.target.String())
		require.Equal(t, client.AsyncQueue{ModelID: "q4z8m2xw", DeploymentID: "d1d2d3d4", NumQueuedRequests: 5, NumInProgressRequests: 2}, q)
		got := <-seen
		require.Equal(t, http.MethodGet, got.method, tc.target.String())
		require.Equal(t, tc.path, got.path, tc.target.String())
	}
}

func TestAsync_GatewaySendsToItsOwnAddress(t *testing.T) {
	apiSrv, apiSeen := fakeGateway(t, func(http.ResponseWriter, *http.Request) {})
	gwSrv, gwSeen := fakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"request_id": "r1", "canceled": true, "message": "canceled"}`)
	})
	res, err := client.New(apiSrv.URL, "mp_key").Gateway(gwSrv.URL).CancelAsyncRequest(context.Background(), "r1")
	require.NoError(t, err)
	require.True(t, res.Canceled)
	require.Equal(t, "/async_request/r1", (<-gwSeen).path)
	require.Empty(t, apiSeen, "the call must not reach the API's address")
}

func TestWebhookSecret_RotateShowsTheSecretAndStatusNeverDoes(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	st, err := f.c.WebhookSecret(ctx)
	require.NoError(t, err)
	require.False(t, st.Exists)
	require.Nil(t, st.CreatedAt)

	_, err = f.c.RotateWebhookSecret(ctx)
	require.Equal(t, http.StatusForbidden, apiError(t, err).Status, "the fixture's member key may not rotate it")
	_, adminKey, err := apikey.Create(ctx, f.db, f.model.WorkspaceID, "admin", true)
	require.NoError(t, err)
	admin := client.New(f.url, adminKey)

	made, err := admin.RotateWebhookSecret(ctx)
	require.NoError(t, err)
	require.True(t, strings.HasPrefix(made.Secret, "whsec_"), made.Secret)
	stored, err := store.GetWebhookSecret(ctx, f.db, f.model.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, stored.Secret, made.Secret)

	st, err = f.c.WebhookSecret(ctx)
	require.NoError(t, err)
	require.True(t, st.Exists)
	require.NotNil(t, st.CreatedAt)
	require.True(t, made.CreatedAt.Equal(*st.CreatedAt), "created_at %v, want %v", *st.CreatedAt, made.CreatedAt)

	again, err := admin.RotateWebhookSecret(ctx)
	require.NoError(t, err)
	require.NotEqual(t, made.Secret, again.Secret)
}

func TestWebhookSecret_BadKeyIsUnauthorized(t *testing.T) {
	f := newFixture(t)
	bad := client.New(f.url, "mp_"+strings.Repeat("x", 12)+"_"+strings.Repeat("a", 32))
	_, err := bad.WebhookSecret(context.Background())
	require.True(t, client.IsStatus(err, http.StatusUnauthorized), "got %v", err)
	_, err = bad.RotateWebhookSecret(context.Background())
	require.True(t, client.IsStatus(err, http.StatusUnauthorized), "got %v", err)
}
