package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/webhook"
	"github.com/modelplane/modelplane/workflows/contract"
)

// receiver is a webhook endpoint that answers 503 until it is up, checks signatures with the
// workspace's secret (read from the dev stack's file, as a user would) and keeps every
// delivery.
type receiver struct {
	secret string
	mu     sync.Mutex
	up     bool
	got    []delivery
}

type delivery struct {
	id, signatureErr string
	accepted         bool
	payload          struct {
		RequestID string                  `json:"request_id"`
		Type      string                  `json:"type"`
		Data      json.RawMessage         `json:"data"`
		Errors    []modelplane.AsyncError `json:"errors"`
	}
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d := delivery{id: r.Header.Get(webhook.HeaderDeliveryID)}
	if err := webhook.Verify(rc.secret, r.Header, body, time.Now(), 5*time.Minute); err != nil {
		d.signatureErr = err.Error()
	}
	_ = json.Unmarshal(body, &d.payload)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	d.accepted = rc.up
	rc.got = append(rc.got, d)
	if !rc.up {
		w.WriteHeader(http.StatusServiceUnavailable)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (rc *receiver) deliveries() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]delivery(nil), rc.got...)
}

func (rc *receiver) setUp() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.up = true
}

func intp(v int) *int { return &v }

// waitAsync waits until the request has ended (and its webhook, if any, is settled) and
// returns its status.
func (h *harness) waitAsync(id string, within time.Duration) client.AsyncRequestStatus {
	h.t.Helper()
	var st client.AsyncRequestStatus
	var err error
	ok := assert.Eventually(h.t, func() bool {
		st, err = h.api.AsyncRequest(context.Background(), id)
		return err == nil && st.Status != modelplane.AsyncQueued && st.Status != modelplane.AsyncInProgress &&
			st.WebhookStatus != modelplane.WebhookPending
	}, within, 50*time.Millisecond)
	if !ok {
		h.t.Fatalf("async request %s did not end within %s: last %+v, %v", id, within, st, err)
	}
	return st
}

// TestAsync_RequestToADeploymentAtZeroWakesItRetriesAndDeliversASignedWebhook sends an async
// request to a deployment at zero whose model fails each request twice; the request wakes
// the deployment, succeeds on its third attempt, and its webhook, refused by the receiver for
// a while, arrives signed, every try under the same delivery ID.
func TestAsync_RequestToADeploymentAtZeroWakesItRetriesAndDeliversASignedWebhook(t *testing.T) {
	h := startWith(t, devstack.Options{WebhookAllowPrivate: true})
	ctx := context.Background()
	archive := testmodelArchive(t, h, "--fail-first", "2")
	modelID, dep := h.createModel("async-sleepy", archive, false)
	h.autoscale(modelID, dep, map[string]any{"min_replica": 0, "scale_down_delay": 2, "autoscaling_window": 10})
	h.waitStatus(modelID, dep, "SCALED_TO_ZERO")

	secret, err := os.ReadFile(filepath.Join(h.dir, devstack.WebhookSecretFile))
	require.NoError(t, err)
	rc := &receiver{secret: strings.TrimSpace(string(secret))}
	hook := httptest.NewServer(rc)
	t.Cleanup(hook.Close)

	id, err := h.api.AsyncPredict(ctx, modelID, client.DeploymentTarget(dep), client.AsyncPredictRequest{
		ModelInput: json.RawMessage(`{"prompt":"wake up"}`), WebhookEndpoint: hook.URL,
		InferenceRetryConfig: &client.InferenceRetryConfig{MaxAttempts: intp(3), InitialDelayMS: intp(200), MaxDelayMS: intp(1000)},
	})
	require.NoError(t, err)
	h.record("async-request", contract.AsyncWorkflowID(id))

	// The receiver refuses the first two deliveries, then comes up.
	require.Eventually(t, func() bool { return len(rc.deliveries()) >= 2 }, 2*time.Minute, 50*time.Millisecond,
		"the webhook is tried and, refused, tried again")
	rc.setUp()
	st := h.waitAsync(id, 2*time.Minute)

	assert.Equal(t, modelplane.AsyncSucceeded, st.Status)
	assert.Equal(t, modelplane.WebhookSucceeded, st.WebhookStatus)
	assert.Equal(t, 3, st.Attempts, "two injected failures, then success")
	require.Len(t, st.Errors, 2, "each failed attempt is kept: %+v", st.Errors)
	for i, e := range st.Errors {
		assert.Equal(t, modelplane.CodeModelPredictError, e.Code)
		assert.Equal(t, i+1, e.Attempt)
	}
	assert.Empty(t, st.Output, "a delivered webhook carried the output; it is not kept")

	ds := rc.deliveries()
	ids := map[string]bool{}
	for _, d := range ds {
		ids[d.id] = true
		assert.Empty(t, d.signatureErr, "every try is signed with the workspace's secret")
		assert.Equal(t, id, d.payload.RequestID)
		assert.Equal(t, "async_request_completed", d.payload.Type)
	}
	assert.Len(t, ids, 1, "every try carries the same delivery ID")
	last := ds[len(ds)-1]
	require.True(t, last.accepted)
	assert.Contains(t, string(last.payload.Data), `"output":{"prompt":"wake up"}`, "the webhook carries the model's answer")
	assert.Len(t, last.payload.Errors, 2, "and the failed attempts")
}

// TestAsync_QueueRunsByPriorityCancelsQueuedRequestsAndCounts fills a deployment that runs one
// request at a time, checks the queue's counts, cancels a queued and a running request, and
// checks that the rest started in priority order, then age.
func TestAsync_QueueRunsByPriorityCancelsQueuedRequestsAndCounts(t *testing.T) {
	h := start(t)
	ctx := context.Background()
	// Each request takes long enough that the queue is filled, counted and a request
	// cancelled while the first still runs, even on a loaded machine.
	archive := testmodelArchive(t, h, "--latency", "1500ms")
	modelID, dep := h.createModel("async-queue", archive, false)
	h.autoscale(modelID, dep, map[string]any{"min_replica": 1, "max_replica": 1, "concurrency_target": 1})
	target := client.DeploymentTarget(dep)

	submit := func(priority int, name string) string {
		t.Helper()
		id, err := h.api.AsyncPredict(ctx, modelID, target, client.AsyncPredictRequest{
			ModelInput: json.RawMessage(fmt.Sprintf(`{"name":%q}`, name)), Priority: intp(priority)})
		require.NoError(t, err)
		return id
	}
	running := submit(1, "first")
	require.Eventually(t, func() bool {
		st, err := h.api.AsyncRequest(ctx, running)
		return err == nil && st.Status == modelplane.AsyncInProgress
	}, time.Minute, 20*time.Millisecond, "the first request runs at once")

	// Queued behind it, in this order of arrival.
	low := []string{submit(2, "low-1"), submit(2, "low-2")}
	normal := []string{submit(1, "normal-1"), submit(1, "normal-2")}
	high := []string{submit(0, "high-1"), submit(0, "high-2")}
	canceled := submit(0, "canceled")

	q, err := h.api.AsyncQueueStatus(ctx, modelID, target)
	require.NoError(t, err)
	assert.Equal(t, dep, q.DeploymentID)
	assert.Equal(t, 7, q.NumQueuedRequests, "queued")
	assert.Equal(t, 1, q.NumInProgressRequests, "in progress")

	res, err := h.api.CancelAsyncRequest(ctx, canceled)
	require.NoError(t, err)
	assert.True(t, res.Canceled, "a queued request cancels: %s", res.Message)
	res, err = h.api.CancelAsyncRequest(ctx, running)
	require.NoError(t, err)
	assert.False(t, res.Canceled, "a running request does not")
	assert.Contains(t, res.Message, modelplane.AsyncInProgress)
	q, err = h.api.AsyncQueueStatus(ctx, modelID, target)
	require.NoError(t, err)
	assert.Equal(t, 6, q.NumQueuedRequests, "the canceled request left the queue")

	st := h.waitAsync(canceled, 30*time.Second)
	assert.Equal(t, modelplane.AsyncCanceled, st.Status)
	order := append(append(append([]string{running}, high...), normal...), low...)
	db, err := store.Open(ctx, h.stack.Postgres.URL)
	require.NoError(t, err)
	defer db.Close()
	started := map[string]time.Time{}
	for _, id := range order {
		st := h.waitAsync(id, time.Minute)
		require.Equal(t, modelplane.AsyncSucceeded, st.Status, "request %s", id)
		require.Contains(t, string(st.Output), `"output":{"name":`, "without a webhook the output is kept with the status")
		r, err := store.GetAsyncRequest(ctx, db, "", id)
		require.NoError(t, err)
		require.NotNil(t, r.StartedAt)
		started[id] = *r.StartedAt
	}
	for i := 1; i < len(order); i++ {
		assert.True(t, started[order[i-1]].Before(started[order[i]]),
			"request %d of %v started before request %d", i-1, order, i)
	}
	q, err = h.api.AsyncQueueStatus(ctx, modelID, target)
	require.NoError(t, err)
	assert.Zero(t, q.NumQueuedRequests+q.NumInProgressRequests, "the queue is empty at the end")
}
