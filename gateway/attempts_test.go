package gateway_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	enums "go.temporal.io/api/enums/v1"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
	"github.com/modelplane/modelplane/workflows/contract"
)

// asyncModel is a model server that records each call by request ID and attempt, and answers
// by the "mode" of its input: fail (500), bad (422), huge (17 MiB), slow (2 s), else an echo.
type asyncModel struct {
	*httptest.Server
	latency        time.Duration
	mu             sync.Mutex
	calls          map[string]int // "request_id/attempt"
	headers        map[string]http.Header
	arrived        map[string]time.Time
	inFlight, peak atomic.Int64
}

func newAsyncModel(t *testing.T, latency time.Duration) *asyncModel {
	t.Helper()
	m := &asyncModel{latency: latency, calls: map[string]int{}, headers: map[string]http.Header{}, arrived: map[string]time.Time{}}
	m.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		now := time.Now()
		n := m.inFlight.Add(1)
		defer m.inFlight.Add(-1)
		for p := m.peak.Load(); n > p && !m.peak.CompareAndSwap(p, n); p = m.peak.Load() {
		}
		key := r.Header.Get("X-Request-Id") + "/" + r.Header.Get("X-Modelplane-Attempt")
		m.mu.Lock()
		m.calls[key]++
		m.headers[key] = r.Header.Clone()
		m.arrived[key] = now
		m.mu.Unlock()
		body, _ := io.ReadAll(r.Body)
		if m.latency > 0 {
			time.Sleep(m.latency)
		}
		switch {
		case strings.Contains(string(body), `"fail"`):
			http.Error(w, "boom: model crashed", http.StatusInternalServerError)
		case strings.Contains(string(body), `"bad"`):
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnprocessableEntity)
			_, _ = io.WriteString(w, `{"detail":"x must be positive"}`)
		case strings.Contains(string(body), `"huge"`):
			w.Header().Set("Content-Type", "application/octet-stream")
			_, _ = w.Write(make([]byte, gateway.MaxAsyncOutputBytes+1<<20))
		case strings.Contains(string(body), `"slow"`):
			select {
			case <-time.After(2 * time.Second):
			case <-r.Context().Done():
			}
		default:
			w.Header().Set("Content-Type", "application/json")
			_, _ = fmt.Fprintf(w, `{"echo":%s}`, body)
		}
	}))
	t.Cleanup(m.Close)
	return m
}

func (m *asyncModel) addr() string { return strings.TrimPrefix(m.URL, "http://") }

func (m *asyncModel) call(requestID string, attempt int) (calls int, h http.Header, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	key := fmt.Sprintf("%s/%d", requestID, attempt)
	return m.calls[key], m.headers[key], m.arrived[key]
}

// queuedRequest records an async request for the deployment, as a gateway would.
func (f *fixture) queuedRequest(deploymentID, input string) string {
	f.t.Helper()
	r, err := store.InsertAsyncRequest(context.Background(), f.db, store.NewAsyncRequest{
		WorkspaceID: f.model.WorkspaceID, ModelID: f.model.ID, DeploymentID: deploymentID,
		Priority: 1, MaxTimeInQueueSeconds: 600, RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(input),
	}, 100000)
	require.NoError(f.t, err)
	return r.ID
}

// createAttempt records attempt n of the request for a gateway to run, as the workflow does.
func (f *fixture) createAttempt(requestID, deploymentID string, n int) {
	f.t.Helper()
	_, err := store.CreateAsyncAttempt(context.Background(), f.db, requestID, n, deploymentID)
	require.NoError(f.t, err)
}

// doneAttempt waits until attempt n of the request is DONE and returns it.
func (f *fixture) doneAttempt(requestID string, n int, within time.Duration) store.AsyncAttempt {
	f.t.Helper()
	var a store.AsyncAttempt
	require.Eventually(f.t, func() bool {
		var err error
		a, err = store.GetAsyncAttempt(context.Background(), f.db, requestID, n)
		require.NoError(f.t, err)
		return a.State == modelplane.AttemptDone
	}, within, 5*time.Millisecond, "attempt %d of %s never finished: %+v", n, requestID, a)
	return a
}

// startGateway runs another gateway on the fixture's database; stop ends it and returns
// what Run returned.
func (f *fixture) startGateway(opts gateway.Options) (gw *gateway.Gateway, stop func() error) {
	f.t.Helper()
	opts.DB, opts.DatabaseURL = f.db, dbURL
	if opts.ID == "" {
		opts.ID = "test-" + modelplane.NewID(6)
	}
	opts.ReportEvery = 100 * time.Millisecond
	gw, err := gateway.New(opts)
	require.NoError(f.t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	stop = sync.OnceValue(func() error { cancel(); return <-done })
	f.t.Cleanup(func() { assert.NoError(f.t, stop()) })
	require.Eventually(f.t, gw.Ready, 5*time.Second, 10*time.Millisecond, "the gateway never loaded its routes")
	return gw, stop
}

func TestAttempt_RunsOnNotificationAndRecordsTheAnswer(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	model := newAsyncModel(t, 0)
	d := f.servingDeployment(model.addr())
	ctx := context.Background()

	var latencies []time.Duration
	var ids []string
	for i := range 5 {
		id := f.queuedRequest(d.ID, fmt.Sprintf(`{"i":%d}`, i))
		ids = append(ids, id)
		claim, err := store.ClaimAsyncRequest(ctx, f.db, id)
		require.NoError(t, err)
		require.True(t, claim.Claimed, "%+v", claim)
		created := time.Now()
		f.createAttempt(id, d.ID, 1)
		a := f.doneAttempt(id, 1, 3*time.Second)
		calls, h, at := model.call(id, 1)
		require.Equal(t, 1, calls)
		latencies = append(latencies, at.Sub(created))

		assert.Equal(t, http.StatusOK, a.StatusCode)
		assert.JSONEq(t, fmt.Sprintf(`{"echo":{"i":%d}}`, i), string(a.Output), "the model's answer is recorded as it is")
		assert.Equal(t, "application/json", a.ContentType)
		assert.Empty(t, a.ErrorCode)
		assert.Equal(t, f.gw.ID(), a.GatewayID)
		assert.Equal(t, id, h.Get("X-Request-Id"))
		assert.Equal(t, "1", h.Get("X-Modelplane-Attempt"))
		assert.Equal(t, "application/json", h.Get("Content-Type"))
		assert.Empty(t, h.Get("Authorization"))

		if i == 4 { // a retry is a second call, told apart by its attempt number
			f.createAttempt(id, d.ID, 2)
			f.doneAttempt(id, 2, 3*time.Second)
			calls, h, _ := model.call(id, 2)
			assert.Equal(t, 1, calls)
			assert.Equal(t, "2", h.Get("X-Modelplane-Attempt"))
		}
		_, err = store.FinishAsyncRequest(ctx, f.db, id, store.AsyncOutcome{Status: modelplane.AsyncSucceeded, Output: a.Output})
		require.NoError(t, err)
	}
	slices.Sort(latencies)
	assert.Less(t, latencies[len(latencies)/2], 200*time.Millisecond,
		"median time from the attempt's notification to the model: %v", latencies)
	assert.Less(t, latencies[len(latencies)-1], 900*time.Millisecond,
		"attempts must start on the notification, not the 1 s poll: %v", latencies)

	time.Sleep(1200 * time.Millisecond) // a poll or more later, nothing ran again
	for _, id := range ids {
		calls, _, _ := model.call(id, 1)
		assert.Equal(t, 1, calls, "the model is called once per attempt")
	}
	m, _ := series(t, f, "modelplane_inference_requests_total",
		map[string]string{"deployment_id": d.ID, "is_async": "true", "status_code": "200"})
	assert.EqualValues(t, 6, m.GetCounter().GetValue(), "every attempt counts as an async inference request")
	h, _ := series(t, f, "modelplane_time_in_async_queue_seconds", map[string]string{"deployment_id": d.ID})
	assert.EqualValues(t, 5, h.GetHistogram().GetSampleCount(), "observed once per request, at its first attempt")
	require.Eventually(t, func() bool {
		var n int
		require.NoError(t, f.db.Get(&n, `SELECT COALESCE(sum(requests), 0) FROM load_samples WHERE deployment_id = $1`, d.ID))
		return n == 6
	}, 3*time.Second, 50*time.Millisecond, "attempts count as the deployment's load")
}

func TestAttempt_FailuresCarryTheirCode(t *testing.T) {
	f := newFixture(t, gateway.Options{UpstreamTimeout: 500 * time.Millisecond})
	model := newAsyncModel(t, 0)
	d := f.servingDeployment(model.addr())
	ctx := context.Background()

	run := func(t *testing.T, deploymentID, input string) (store.AsyncAttempt, string) {
		t.Helper()
		id := f.queuedRequest(deploymentID, input)
		f.createAttempt(id, deploymentID, 1)
		return f.doneAttempt(id, 1, 5*time.Second), id
	}
	for _, c := range []struct {
		name, input string
		code        modelplane.ErrorCode
		status      int
		message     string
	}{
		{"model error", `{"mode":"fail"}`, modelplane.CodeModelPredictError, 500, "the model answered 500: boom: model crashed"},
		{"invalid input", `{"mode":"bad"}`, modelplane.CodeModelInvalidInput, 422, `the model answered 422: {"detail":"x must be positive"}`},
		{"output too large", `{"mode":"huge"}`, modelplane.CodeModelOutputTooLarge, 502, "larger than the limit of 16777216 bytes"},
		{"timeout", `{"mode":"slow"}`, modelplane.CodeModelPredictTimeout, 504, "did not answer within 500ms"},
	} {
		t.Run(c.name, func(t *testing.T) {
			a, _ := run(t, d.ID, c.input)
			assert.Equal(t, c.status, a.StatusCode)
			assert.Equal(t, c.code, a.ErrorCode)
			assert.Contains(t, a.Error, c.message)
			assert.Nil(t, a.Output, "a failed attempt records no output")
		})
	}

	unavailable := func(t *testing.T, deploymentID, message string) {
		t.Helper()
		a, id := run(t, deploymentID, `{"x":1}`)
		assert.Equal(t, http.StatusNotFound, a.StatusCode)
		assert.Equal(t, modelplane.CodeModelUnavailable, a.ErrorCode)
		assert.Contains(t, a.Error, message)
		calls, _, _ := model.call(id, 1)
		assert.Zero(t, calls, "the model is not called")
	}
	t.Run("deactivated", func(t *testing.T) {
		dd := f.deployment("", false, model.addr())
		require.NoError(t, store.SetDeploymentStatus(ctx, f.db, dd.ID, "INACTIVE", ""))
		require.Eventually(t, func() bool {
			return strings.Contains(f.predict("deployment/"+dd.ID, "{}").body, "is deactivated")
		}, 2*time.Second, 5*time.Millisecond)
		unavailable(t, dd.ID, "is deactivated")
	})
	t.Run("deleted", func(t *testing.T) {
		dd := f.deployment("", false, model.addr())
		require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, f.model.ID, dd.ID))
		require.Eventually(t, func() bool {
			return strings.Contains(f.predict("deployment/"+dd.ID, "{}").body, "was deleted")
		}, 2*time.Second, 5*time.Millisecond)
		unavailable(t, dd.ID, "was deleted")
	})
	t.Run("unreachable", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		dead := ln.Addr().String()
		require.NoError(t, ln.Close())
		dd := f.deployment("", false, dead)
		require.Eventually(t, func() bool { return len(f.gw.Routable(f.model.ID, dd.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)
		a, _ := run(t, dd.ID, `{"x":1}`)
		assert.Equal(t, http.StatusBadGateway, a.StatusCode)
		assert.Equal(t, modelplane.CodeModelUnavailable, a.ErrorCode)
	})
	m, _ := series(t, f, "modelplane_inference_requests_total",
		map[string]string{"deployment_id": d.ID, "is_async": "true", "status_code": "500"})
	assert.EqualValues(t, 1, m.GetCounter().GetValue())
}

func TestAttempt_WakesASleepingDeployment(t *testing.T) {
	model := newServer(t, "woken", testmodel.Options{})
	var f *fixture
	tc := &fakeTemporal{t: t, db: func() *fixture { return f }, addr: model.addr(), delay: 200 * time.Millisecond}
	f = newFixture(t, gateway.Options{Temporal: tc})
	d := f.sleepingDeployment()

	id := f.queuedRequest(d.ID, `{"x":1}`)
	f.createAttempt(id, d.ID, 1)
	a := f.doneAttempt(id, 1, 5*time.Second)
	assert.Equal(t, http.StatusOK, a.StatusCode, "%+v", a)
	assert.Contains(t, string(a.Output), `"output":{"x":1}`)
	assert.EqualValues(t, 1, tc.wakes.Load(), "the attempt woke its deployment")
	assert.EqualValues(t, 1, model.hits.Load())
}

func TestAttempt_StoppingGatewayGivesBackUnsentAndFinishesSent(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1}) // runs no attempts itself
	ctx := context.Background()
	slow := newServer(t, "slow", testmodel.Options{Latency: time.Second})
	ds := f.servingDeployment(slow.addr())
	asleep := f.deployment("", false)
	require.NoError(t, store.SetDeploymentStatus(ctx, f.db, asleep.ID, modelplane.DeploymentScaledToZero, ""))

	gw, stop := f.startGateway(gateway.Options{Temporal: &fakeTemporal{t: t}}) // wakes nothing
	require.Eventually(t, func() bool { return len(gw.Routable(f.model.ID, ds.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)

	sent := f.queuedRequest(ds.ID, `{"x":1}`)
	f.createAttempt(sent, ds.ID, 1)
	held := f.queuedRequest(asleep.ID, `{"x":2}`)
	t.Cleanup(func() { _, _ = f.db.Exec(`DELETE FROM async_requests WHERE id = $1`, held) })
	f.createAttempt(held, asleep.ID, 1)
	require.Eventually(t, func() bool {
		a, err := store.GetAsyncAttempt(ctx, f.db, held, 1)
		require.NoError(t, err)
		return slow.h.Stats().InFlight == 1 && a.State == modelplane.AttemptRunning && a.GatewayID == gw.ID()
	}, 3*time.Second, 5*time.Millisecond, "one attempt at the model, one waiting for its deployment")

	start := time.Now()
	require.NoError(t, stop())
	took := time.Since(start)
	assert.Less(t, took, 4*time.Second, "the stop waits for the attempt at the model, not longer")

	a, err := store.GetAsyncAttempt(ctx, f.db, sent, 1)
	require.NoError(t, err)
	assert.Equal(t, modelplane.AttemptDone, a.State, "the attempt at the model finished and was recorded: %+v", a)
	assert.Equal(t, http.StatusOK, a.StatusCode)
	assert.EqualValues(t, 1, slow.hits.Load())

	b, err := store.GetAsyncAttempt(ctx, f.db, held, 1)
	require.NoError(t, err)
	assert.Equal(t, modelplane.AttemptPending, b.State, "the attempt that never reached a model is given back")
	assert.Empty(t, b.GatewayID)
}

func TestAttempt_TwoGatewaysRunEachAttemptOnce(t *testing.T) {
	const slots = 4
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: slots})
	model := newAsyncModel(t, 50*time.Millisecond)
	d := f.servingDeployment(model.addr())
	other, _ := f.startGateway(gateway.Options{MaxAsyncAttempts: slots})
	require.Eventually(t, func() bool { return len(other.Routable(f.model.ID, d.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)

	const n = 40
	var ids []string
	for i := range n {
		ids = append(ids, f.queuedRequest(d.ID, fmt.Sprintf(`{"i":%d}`, i)))
	}
	for _, id := range ids {
		f.createAttempt(id, d.ID, 1)
	}
	ran := map[string]int{}
	for _, id := range ids {
		a := f.doneAttempt(id, 1, 10*time.Second)
		require.Equal(t, http.StatusOK, a.StatusCode, "%+v", a)
		ran[a.GatewayID]++
	}
	for _, id := range ids {
		calls, _, _ := model.call(id, 1)
		require.Equal(t, 1, calls, "attempt of %s ran %d times", id, calls)
	}
	assert.Equal(t, map[string]bool{f.gw.ID(): true, other.ID(): true}, map[string]bool{
		f.gw.ID(): ran[f.gw.ID()] > 0, other.ID(): ran[other.ID()] > 0}, "both gateways took attempts: %v", ran)
	assert.Equal(t, n, ran[f.gw.ID()]+ran[other.ID()], "ran by: %v", ran)
	assert.LessOrEqual(t, model.peak.Load(), int64(2*slots), "each gateway runs at most its slots at once")
}

func TestAttempt_RunningHereButUnknownIsGivenBackAndRunOnce(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1}) // runs no attempts itself
	ctx := context.Background()
	model := newAsyncModel(t, 0)
	d := f.servingDeployment(model.addr())
	id := "gw-" + modelplane.NewID(6)

	// A claim made under this gateway's ID whose answer never reached it: a timeout after the
	// commit, or a previous process that reported under the same ID.
	req := f.queuedRequest(d.ID, `{"lost":true}`)
	f.createAttempt(req, d.ID, 1)
	claimed, err := store.ClaimAsyncAttempts(ctx, f.db, id, 1)
	require.NoError(t, err)
	require.Len(t, claimed, 1)

	gw, _ := f.startGateway(gateway.Options{ID: id})
	require.Eventually(t, func() bool { return len(gw.Routable(f.model.ID, d.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)
	time.Sleep(2 * attemptPollForTest)
	a, err := store.GetAsyncAttempt(ctx, f.db, req, 1)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptRunning, a.State, "nothing ends such an attempt but the check")

	gw.ReconcileAttempts(ctx)
	a = f.doneAttempt(req, 1, 5*time.Second)
	assert.Equal(t, http.StatusOK, a.StatusCode)
	calls, _, _ := model.call(req, 1)
	assert.Equal(t, 1, calls, "given back, then run once")
}

// attemptPollForTest is the gateway's poll for new attempts (one second).
const attemptPollForTest = time.Second

func TestAttempt_ARequestThatNeedsNoRetryEndsWithoutAWorkflow(t *testing.T) {
	tc := &asyncTemporal{}
	f := newFixture(t, gateway.Options{Temporal: tc, AsyncOutputRetention: 3 * time.Hour})
	model := newAsyncModel(t, 0)
	d := f.servingDeployment(model.addr())

	ok := f.accepted("production", `{"model_input":{"i":1}}`)
	bad := f.accepted("production", `{"model_input":"bad"}`)
	for _, id := range []string{ok, bad} {
		require.Eventually(t, func() bool { return f.asyncRow(id).Status.Ended() }, 5*time.Second, 10*time.Millisecond,
			"the gateway starts the queued request and ends it")
	}
	row := f.asyncRow(ok)
	assert.Equal(t, modelplane.AsyncSucceeded, row.Status)
	assert.Equal(t, d.ID, row.DeploymentID)
	assert.JSONEq(t, `{"echo":{"i":1}}`, string(row.Output))
	assert.Equal(t, 1, row.Attempts)
	require.NotNil(t, row.OutputExpiresAt)
	assert.WithinDuration(t, time.Now().Add(3*time.Hour), *row.OutputExpiresAt, time.Minute, "kept for --async-output-retention")
	row = f.asyncRow(bad)
	assert.Equal(t, modelplane.AsyncFailed, row.Status, "a 422 no retry can mend ends the request at once")
	require.Len(t, row.Errors, 1)
	assert.Equal(t, modelplane.CodeModelInvalidInput, row.Errors[0].Code)
	starts, _ := tc.recorded()
	assert.Empty(t, starts, "neither needed a workflow")
}

func TestAttempt_ARetryDueStartsTheRequestsWorkflowOnceTemporalAnswers(t *testing.T) {
	tc := &asyncTemporal{failStart: true}
	f := newFixture(t, gateway.Options{Temporal: tc})
	model := newAsyncModel(t, 0)
	f.servingDeployment(model.addr())

	id := f.accepted("production", `{"model_input":"fail"}`)
	require.Eventually(t, func() bool { return f.asyncRow(id).Attempts == 1 }, 5*time.Second, 10*time.Millisecond,
		"the gateway starts the queued request")
	a := f.doneAttempt(id, 1, 5*time.Second)
	assert.Equal(t, http.StatusInternalServerError, a.StatusCode)
	row := f.asyncRow(id)
	assert.Equal(t, modelplane.AsyncInProgress, row.Status, "a retry is due: the request is not over")
	assert.NotNil(t, row.WorkflowWantedAt)
	startsOf := func() []asyncStart {
		starts, _ := tc.recorded()
		var out []asyncStart
		for _, s := range starts {
			if s.opts.ID == contract.AsyncWorkflowID(id) {
				out = append(out, s)
			}
		}
		return out
	}
	require.Eventually(t, func() bool { return len(startsOf()) >= 2 }, 5*time.Second, 50*time.Millisecond,
		"the start is tried, and tried again while Temporal refuses")
	s := startsOf()[0]
	assert.Equal(t, contract.TaskQueue, s.opts.TaskQueue)
	assert.Equal(t, enums.WORKFLOW_ID_REUSE_POLICY_ALLOW_DUPLICATE, s.opts.WorkflowIDReusePolicy)
	assert.Equal(t, "AsyncRequest", s.workflow)
	assert.Equal(t, []any{contract.AsyncRequestInput{RequestID: id}}, s.args)
	tc.mu.Lock()
	tc.failStart = false
	tc.mu.Unlock()
	tried := len(startsOf())
	require.Eventually(t, func() bool { return len(startsOf()) > tried }, 15*time.Second, 50*time.Millisecond,
		"and again once Temporal is back")
	started := len(startsOf())
	time.Sleep(3 * time.Second)
	assert.Equal(t, started, len(startsOf()), "a started workflow is not started again")
}
