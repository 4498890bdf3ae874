package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// backpressureAnswer is one prediction's status, body and how long it took.
type backpressureAnswer struct {
	status int
	body   string
	took   time.Duration
}

// predictAsync sends one prediction to the model's production and answers on the channel.
func (h *harness) predictAsync(modelID string) <-chan backpressureAnswer {
	out := make(chan backpressureAnswer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, h.stack.APIURL+"/models/"+modelID+"/production/predict",
			strings.NewReader(`{"text":"full"}`))
		req.Header.Set("Authorization", "Api-Key "+h.key)
		start := time.Now()
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- backpressureAnswer{body: err.Error(), took: time.Since(start)}
			return
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		out <- backpressureAnswer{status: res.StatusCode, body: string(b), took: time.Since(start)}
	}()
	return out
}

// A deployment of one replica with concurrency_target 1 and a model that takes two seconds per
// prediction: REJECT_ON_FULL answers a second request 429 at once, QUEUE_ON_FULL holds it
// until the first is done and refuses a third.
func TestBackpressure_PoliciesActOnAFullDeployment(t *testing.T) {
	h := start(t)
	modelID, dep := h.createModel("full", testmodelArchive(t, h, "--latency", "2s"), false)
	h.promote(modelID, "production", dep)
	h.autoscale(modelID, dep, map[string]any{"min_replica": 1, "max_replica": 1, "concurrency_target": 1})
	require.Eventually(t, func() bool { return h.readyReplicas(dep) == 1 }, time.Minute, 100*time.Millisecond)
	policy := func(p string) {
		code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/deployments/"+dep+"/request_backpressure_settings",
			map[string]any{"policy": p})
		require.Equal(t, http.StatusOK, code, "%v", body)
		time.Sleep(time.Second) // the gateways' routing table follows the change
	}

	policy("REJECT_ON_FULL")
	first := h.predictAsync(modelID)
	time.Sleep(500 * time.Millisecond)
	refused := <-h.predictAsync(modelID)
	require.Equal(t, http.StatusTooManyRequests, refused.status, refused.body)
	require.Less(t, refused.took, time.Second, "refused at once, not after the model's two seconds")
	a := <-first
	require.Equal(t, http.StatusOK, a.status, a.body)

	policy("QUEUE_ON_FULL")
	first = h.predictAsync(modelID)
	time.Sleep(500 * time.Millisecond)
	queued := h.predictAsync(modelID)
	time.Sleep(500 * time.Millisecond)
	third := <-h.predictAsync(modelID)
	require.Equal(t, http.StatusTooManyRequests, third.status, "one replica queues one request: %s", third.body)
	a = <-first
	require.Equal(t, http.StatusOK, a.status, a.body)
	b := <-queued
	require.Equal(t, http.StatusOK, b.status, b.body)
	require.Greater(t, b.took, 3*time.Second, "the queued request waited for the first to be done")
}
