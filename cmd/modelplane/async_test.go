package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/store"
)

// queuedAnswer answers an async predict as the gateway does once the request is queued.
func queuedAnswer(w http.ResponseWriter, _ *http.Request) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusCreated)
	_, _ = io.WriteString(w, `{"request_id": "r0123456789abcde"}`)
}

func TestPredictCmd_AsyncQueuesTheInputWithItsOptionsAndPrintsTheRequestID(t *testing.T) {
	g := newFakeGateway(t, queuedAnswer)
	r := runPredict(t, "", g.env(), predictModelID, `{"prompt": "hi"}`, "--async", "--environment", "staging",
		"--webhook", "https://hooks.example.com/h?x=1", "--priority", "0", "--max-time-in-queue", "60")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, "r0123456789abcde\n", r.stdout, "the request ID alone, for scripts")
	reqs := g.requests()
	require.Len(t, reqs, 1, "an ID needs no lookup")
	require.Equal(t, http.MethodPost, reqs[0].method)
	require.Equal(t, "/models/q4z8m2xw/environments/staging/async_predict", reqs[0].path)
	require.Equal(t, "Api-Key mp_key", reqs[0].auth)
	require.JSONEq(t, `{"model_input": {"prompt": "hi"}, "webhook_endpoint": "https://hooks.example.com/h?x=1",
		"priority": 0, "max_time_in_queue_seconds": 60}`, reqs[0].body)
}

func TestPredictCmd_AsyncSendsOnlyTheOptionsGiven(t *testing.T) {
	g := newFakeGateway(t, queuedAnswer)
	r := runPredict(t, "[1, 2]", g.env(), predictModelID, "--async", "--development")
	require.Zero(t, r.exit, r.stderr)
	reqs := g.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "/models/q4z8m2xw/development/async_predict", reqs[0].path)
	require.JSONEq(t, `{"model_input": [1, 2]}`, reqs[0].body, "defaults are the gateway's: nothing else is sent")
}

func TestPredictCmd_AsyncJSONOutputIsTheRequestIDObject(t *testing.T) {
	g := newFakeGateway(t, queuedAnswer)
	r := runPredict(t, "", g.env(), predictModelID, "{}", "--async", "--output", "json")
	require.Zero(t, r.exit, r.stderr)
	require.JSONEq(t, `{"request_id": "r0123456789abcde"}`, r.stdout)
}

func TestPredictCmd_AsyncModelNameIsLookedUp(t *testing.T) {
	g := newFakeGateway(t, queuedAnswer)
	r := runPredict(t, "", g.env(), "echo", "{}", "--async")
	require.Zero(t, r.exit, r.stderr)
	var paths []string
	for _, req := range g.requests() {
		paths = append(paths, req.path)
	}
	require.Equal(t, []string{"/v1/models", "/models/q4z8m2xw/production/async_predict"}, paths)
}

func TestPredictCmd_AsyncOptionsAreCheckedBeforeSending(t *testing.T) {
	g := newFakeGateway(t, queuedAnswer)
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--webhook", "https://hooks.example.com/h"}, "Error: --webhook needs --async\n"},
		{[]string{"--priority", "2"}, "Error: --priority needs --async\n"},
		{[]string{"--max-time-in-queue", "60"}, "Error: --max-time-in-queue needs --async\n"},
		{[]string{"--async", "--stream"}, "Error: --stream and --async cannot go together: an async request's answer is fetched later\n"},
		{[]string{"--async", "--priority", "3"}, "Error: --priority 3: use 0 (first) to 2 (last)\n"},
		{[]string{"--async", "--priority", "-1"}, "Error: --priority -1: use 0 (first) to 2 (last)\n"},
		{[]string{"--async", "--max-time-in-queue", "9"}, "Error: --max-time-in-queue 9: use 10 to 259200 seconds\n"},
		{[]string{"--async", "--max-time-in-queue", "259201"}, "Error: --max-time-in-queue 259201: use 10 to 259200 seconds\n"},
		{[]string{"--async", "--webhook", "ftp://hooks.example.com/h"},
			"Error: --webhook \"ftp://hooks.example.com/h\": invalid webhook URL: scheme \"ftp\" is not allowed: use http or https\n"},
		{[]string{"--async", "--webhook", "hooks.example.com/h"},
			"Error: --webhook \"hooks.example.com/h\": invalid webhook URL: \"hooks.example.com/h\" has no scheme: use http:// or https://\n"},
		{[]string{"--async", "--webhook", " "}, "Error: --webhook needs a URL\n"},
	} {
		r := runPredict(t, "", g.env(), append([]string{predictModelID, "{}"}, tc.flags...)...)
		require.Equal(t, 1, r.exit, "%v", tc.flags)
		require.Equal(t, tc.want, r.stderr, "%v", tc.flags)
	}
	require.Empty(t, g.requests(), "nothing may be sent")
}

func TestPredictCmd_AsyncRefusalShowsTheGatewaysMessageAndWhenToRetry(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "9")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = io.WriteString(w, `{"error": {"code": "rate_limited", "message": "too many open async requests"}}`)
	})
	r := runPredict(t, "", g.env(), predictModelID, "{}", "--async")
	require.Equal(t, 1, r.exit)
	require.Empty(t, r.stdout)
	require.Equal(t, "Error: too many open async requests (HTTP 429 rate_limited); retry in 9s\n", r.stderr)
}

// statusAnswer is a finished request as the gateway shows it.
const statusAnswer = `{"request_id": "r0123456789abcde", "model_id": "q4z8m2xw", "deployment_id": "d1d2d3d4",
	"environment": "production", "status": "SUCCEEDED", "webhook_status": "NO_WEBHOOK_PROVIDED",
	"created_at": "2025-01-02T03:04:05Z", "status_at": "2025-01-02T03:04:09Z",
	"errors": [{"code": "MODEL_PREDICT_ERROR", "message": "the model answered 500:\nboom", "attempt": 1}],
	"attempts": 2, "output": {"text": "hello",  "n": 1}}`

func TestAsyncRequestCmd_ShowsStatusErrorsAndOutput(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, statusAnswer) })
	r := runClient(t, "", g.env(), "async-request", "r0123456789abcde")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, ""+
		"Request:      r0123456789abcde\n"+
		"Model:        q4z8m2xw\n"+
		"Deployment:   d1d2d3d4 (production)\n"+
		"Status:       SUCCEEDED\n"+
		"Webhook:      NO_WEBHOOK_PROVIDED\n"+
		"Created:      2025-01-02T03:04:05Z\n"+
		"Status since: 2025-01-02T03:04:09Z\n"+
		"Attempts:     2\n"+
		"Error:        attempt 1: MODEL_PREDICT_ERROR: the model answered 500: boom\n"+
		`Output:       {"text":"hello","n":1}`+"\n", r.stdout)
	reqs := g.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, http.MethodGet, reqs[0].method)
	require.Equal(t, "/async_request/r0123456789abcde", reqs[0].path)
	require.Equal(t, "Api-Key mp_key", reqs[0].auth)

	r = runClient(t, "", g.env(), "async-request", "r0123456789abcde", "-o", "json")
	require.Zero(t, r.exit, r.stderr)
	require.JSONEq(t, statusAnswer, r.stdout)
}

func TestAsyncRequestCmd_UnknownRequestShowsTheGatewaysMessage(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error": {"code": "not_found", "message": "async request \"nope\" not found"}}`)
	})
	r := runClient(t, "", g.env(), "async-request", "nope")
	require.Equal(t, 1, r.exit)
	require.Equal(t, "Error: async request \"nope\" not found (HTTP 404 not_found)\n", r.stderr)
}

func TestAsyncRequestCmd_CancelSaysWhetherItWasCanceled(t *testing.T) {
	var notCanceled atomic.Bool
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		if !notCanceled.Load() {
			_, _ = io.WriteString(w, `{"request_id": "r1", "canceled": true, "message": "canceled"}`)
			return
		}
		_, _ = io.WriteString(w, `{"request_id": "r1", "canceled": false, "message": "request is IN_PROGRESS: only queued requests can be canceled"}`)
	})
	r := runClient(t, "", g.env(), "async-request", "r1", "--cancel")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, "canceled r1\n", r.stdout)
	reqs := g.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, http.MethodDelete, reqs[0].method)
	require.Equal(t, "/async_request/r1", reqs[0].path)

	notCanceled.Store(true)
	r = runClient(t, "", g.env(), "async-request", "r1", "--cancel")
	require.Equal(t, 1, r.exit, "a request that was not canceled fails the command")
	require.Empty(t, r.stdout)
	require.Equal(t, "Error: request r1 was not canceled: request is IN_PROGRESS: only queued requests can be canceled\n", r.stderr)

	r = runClient(t, "", g.env(), "async-request", "r1", "--cancel", "-o", "json")
	require.Equal(t, 1, r.exit)
	require.JSONEq(t, `{"request_id": "r1", "canceled": false, "message": "request is IN_PROGRESS: only queued requests can be canceled"}`, r.stdout)
}

func TestAsyncRequestCmd_GatewayURLComesFromItsOwnVariable(t *testing.T) {
	apiSrv := newFakeGateway(t, echoAnswer)
	gw := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) { _, _ = io.WriteString(w, statusAnswer) })
	r := runClient(t, "", append(apiSrv.env(), "MODELPLANE_GATEWAY_URL="+gw.url), "async-request", "r0123456789abcde")
	require.Zero(t, r.exit, r.stderr)
	require.Empty(t, apiSrv.requests(), "the call must go to the gateway only")
	require.Len(t, gw.requests(), 1)

	r = runClient(t, "", append(apiSrv.env(), "MODELPLANE_GATEWAY_URL=http://"+freeAddr(t)), "async-request", "r1")
	require.Equal(t, 1, r.exit)
	require.Contains(t, r.stderr, "Error: cannot reach the gateway at http://")

	r = runClient(t, "", apiSrv.env(), "async-request", "r1", "--gateway-url", "ftp://x")
	require.Equal(t, 1, r.exit)
	require.Equal(t, "Error: gateway URL \"ftp://x\": use http://host:port or https://host (--gateway-url, MODELPLANE_GATEWAY_URL)\n", r.stderr)
}

func TestAsyncQueueCmd_EachTargetFlagReadsItsPath(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		_, _ = io.WriteString(w, `{"model_id": "q4z8m2xw", "deployment_id": "d1d2d3d4", "num_queued_requests": 5, "num_in_progress_requests": 2}`)
	})
	for _, tc := range []struct {
		flags []string
		path  string
	}{
		{nil, "/models/q4z8m2xw/production/async_queue_status"},
		{[]string{"--environment", "staging"}, "/models/q4z8m2xw/environments/staging/async_queue_status"},
		{[]string{"--development"}, "/models/q4z8m2xw/development/async_queue_status"},
		{[]string{"--deployment", "d1d2d3d4"}, "/models/q4z8m2xw/deployment/d1d2d3d4/async_queue_status"},
	} {
		r := runClient(t, "", g.env(), append([]string{"async-queue", predictModelID}, tc.flags...)...)
		require.Zero(t, r.exit, "%v: %s", tc.flags, r.stderr)
		require.Equal(t, [][]string{{"MODEL", "DEPLOYMENT", "QUEUED", "IN", "PROGRESS"}, {"q4z8m2xw", "d1d2d3d4", "5", "2"}},
			table(r.stdout), "%v", tc.flags)
		reqs := g.requests()
		require.Len(t, reqs, 1, "%v", tc.flags)
		require.Equal(t, tc.path, reqs[0].path, "%v", tc.flags)
	}

	r := runClient(t, "", g.env(), "async-queue", "echo", "-o", "json")
	require.Zero(t, r.exit, r.stderr)
	require.JSONEq(t, `{"model_id": "q4z8m2xw", "deployment_id": "d1d2d3d4", "num_queued_requests": 5, "num_in_progress_requests": 2}`, r.stdout)
	var paths []string
	for _, req := range g.requests() {
		paths = append(paths, req.path)
	}
	require.Equal(t, []string{"/v1/models", "/models/q4z8m2xw/production/async_queue_status"}, paths, "a name is looked up")

	r = runClient(t, "", g.env(), "async-queue", predictModelID, "--development", "--deployment", "d1d2d3d4")
	require.Equal(t, 1, r.exit)
	require.Equal(t, "Error: --development and --deployment d1d2d3d4 cannot go together: a request goes to one target (production when none is given)\n", r.stderr)
	require.Empty(t, g.requests())
}

func TestWebhookSecretCmd_RotatePrintsTheSecretOnceAndStatusNeverShowsIt(t *testing.T) {
	db, url := apitest.Serve(t, dbURL)
	m, _, key := apitest.AdminWorkspace(t, db, "cli")
	run := func(args ...string) cliResult {
		return runClient(t, "", []string{"MODELPLANE_URL=" + url, "MODELPLANE_API_KEY=" + key}, append([]string{"webhook-secret"}, args...)...)
	}

	r := run()
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, "no webhook secret: make one with `modelplane webhook-secret --rotate`\n", r.stdout)
	r = run("-o", "json")
	require.Zero(t, r.exit, r.stderr)
	require.JSONEq(t, `{"exists": false}`, r.stdout)

	r = run("--rotate")
	require.Zero(t, r.exit, r.stderr)
	secret := strings.TrimSuffix(r.stdout, "\n")
	require.True(t, strings.HasPrefix(secret, "whsec_"), "stdout must be the secret alone, got %q", r.stdout)
	require.NotContains(t, secret, "\n")
	require.Contains(t, r.stderr, "shown only this once")
	stored, err := store.GetWebhookSecret(context.Background(), db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, stored.Secret, secret)

	r = run()
	require.Zero(t, r.exit, r.stderr)
	require.True(t, strings.HasPrefix(r.stdout, "webhook secret made "+stored.CreatedAt.UTC().Format("2006-01-02T15:04:05Z")), r.stdout)
	require.NotContains(t, r.stdout, secret)

	r = run("--rotate", "-o", "json")
	require.Zero(t, r.exit, r.stderr)
	var rotated struct {
		Secret    string `json:"secret"`
		CreatedAt string `json:"created_at"`
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rotated), r.stdout)
	require.True(t, strings.HasPrefix(rotated.Secret, "whsec_"))
	require.NotEqual(t, secret, rotated.Secret, "--rotate replaces the secret")
	require.NotEmpty(t, rotated.CreatedAt)
}

func TestWebhookSecretCmd_BadKeyIsExplained(t *testing.T) {
	_, url := apitest.Serve(t, dbURL)
	bad := "mp_" + strings.Repeat("x", 12) + "_" + strings.Repeat("a", 32)
	r := runClient(t, "", nil, "webhook-secret", "--rotate", "--url", url, "--api-key", bad)
	require.Equal(t, 1, r.exit)
	require.Empty(t, r.stdout)
	require.Equal(t, "Error: invalid API key (HTTP 401 unauthenticated); the key came from --api-key\n", r.stderr)
}

func TestWebhookSecretCmd_RotateWithAMemberKeySaysItNeedsAnAdminKey(t *testing.T) {
	db, url := apitest.Serve(t, dbURL)
	m, _, key := apitest.Workspace(t, db, "cli")
	r := runClient(t, "", nil, "webhook-secret", "--rotate", "--url", url, "--api-key", key)
	require.Equal(t, 1, r.exit)
	require.Empty(t, r.stdout)
	require.Equal(t, "Error: rotating the webhook secret needs an admin key (WORKSPACE_MANAGE_ALL); this is a member key (PERSONAL)"+
		" (HTTP 403 permission_denied); the key came from --api-key: an operator makes admin keys with `modelplane keys create --admin`\n", r.stderr)
	_, err := store.GetWebhookSecret(context.Background(), db, m.WorkspaceID)
	require.ErrorIs(t, err, store.ErrNotFound, "nothing was rotated")
}
