package activities_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/testsuite"
	sdkworker "go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"
	"go.temporal.io/server/temporaltest"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/webhook"
	"github.com/modelplane/modelplane/worker"
	"github.com/modelplane/modelplane/workflows/contract"
)

// asyncFixture is a model with an ACTIVE deployment that has room for one async request.
type asyncFixture struct {
	db   *sqlx.DB
	acts *activities.Activities
	env  *testsuite.TestActivityEnvironment
	m    store.Model
	dep  store.Deployment
}

func newAsyncFixture(t *testing.T) *asyncFixture {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "echo")
	require.NoError(t, err)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: ws.ID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET status = 'ACTIVE' WHERE id = $1`, d.ID)
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `INSERT INTO replicas (id, deployment_id, state) VALUES ($1, $2, 'READY')`, modelplane.NewID(12), d.ID)
	require.NoError(t, err)
	// Attempts other tests left pending must not be claimed by this test's gateway.
	_, err = db.ExecContext(ctx, `UPDATE async_attempts SET state = 'DONE' WHERE state <> 'DONE'`)
	require.NoError(t, err)
	acts := &activities.Activities{DB: db, DatabaseURL: dbURL, WebhookAllowPrivate: true}
	t.Cleanup(func() { activities.StopAsyncListener(acts) })
	return &asyncFixture{db: db, acts: acts, env: activityEnv(acts), m: m, dep: d}
}

func activityEnv(acts *activities.Activities) *testsuite.TestActivityEnvironment {
	var s testsuite.WorkflowTestSuite
	env := s.NewTestActivityEnvironment()
	env.RegisterActivity(acts)
	return env
}

// request records a queued request for the fixture's deployment.
func (f *asyncFixture) request(t *testing.T, hook string) store.AsyncRequest {
	t.Helper()
	r, err := store.InsertAsyncRequest(context.Background(), f.db, store.NewAsyncRequest{
		WorkspaceID: f.m.WorkspaceID, ModelID: f.m.ID, DeploymentID: f.dep.ID, WebhookEndpoint: hook,
		Priority: 1, MaxTimeInQueueSeconds: 600, RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(`{"x":1}`),
	}, 1000)
	require.NoError(t, err)
	return r
}

// running records a request and takes it off the queue, as its workflow does.
func (f *asyncFixture) running(t *testing.T, hook string) store.AsyncRequest {
	t.Helper()
	r := f.request(t, hook)
	_, err := store.MarkAsyncWorkflowStarted(context.Background(), f.db, r.ID)
	require.NoError(t, err)
	c, err := store.ClaimAsyncRequest(context.Background(), f.db, r.ID)
	require.NoError(t, err)
	require.True(t, c.Claimed, "the fixture's deployment has room: %+v", c)
	return r
}

// gateway plays a gateway: it reports itself alive, claims the pending attempt and hands it
// back to the test.
type gateway struct {
	t  *testing.T
	db *sqlx.DB
	id string
}

func newGateway(t *testing.T, db *sqlx.DB) *gateway {
	g := &gateway{t: t, db: db, id: "async-gateway-" + modelplane.NewID(6)}
	require.NoError(t, store.ReportGateway(context.Background(), db, store.GatewayReport{GatewayID: g.id, RoutesAt: time.Now()}))
	t.Cleanup(func() { _ = store.DeleteGatewayReport(context.Background(), db, g.id) })
	return g
}

// claim waits until the attempt of requestID is pending and claims it.
func (g *gateway) claim(requestID string) store.ClaimedAttempt {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		cs, err := store.ClaimAsyncAttempts(context.Background(), g.db, g.id, 10)
		if err != nil {
			g.t.Errorf("claim attempts: %v", err)
			return store.ClaimedAttempt{}
		}
		for _, c := range cs {
			if c.RequestID == requestID {
				return c
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	var states []string
	_ = g.db.Select(&states, `SELECT attempt || ' ' || state || ' ' || gateway_id FROM async_attempts WHERE request_id = $1`, requestID)
	g.t.Errorf("no attempt of %s to claim within 30s (gateway %s; attempts: %v)", requestID, g.id, states)
	return store.ClaimedAttempt{}
}

func (g *gateway) finish(c store.ClaimedAttempt, r store.AttemptResult) store.AttemptConclusion {
	got, err := store.FinishAsyncAttempt(context.Background(), g.db, c.RequestID, c.Attempt, g.id, r, 0, false)
	if err != nil || !got.Recorded {
		g.t.Errorf("finish attempt %s/%d: %+v, err %v", c.RequestID, c.Attempt, got, err)
	}
	return got
}

// runAttempt runs RunAsyncAttempt in env and returns its result.
func runAttempt(env *testsuite.TestActivityEnvironment, acts *activities.Activities, in contract.RunAsyncAttemptInput) (contract.RunAsyncAttemptResult, error) {
	var res contract.RunAsyncAttemptResult
	v, err := env.ExecuteActivity(acts.RunAsyncAttempt, in)
	if err == nil {
		err = v.Get(&res)
	}
	return res, err
}

func TestRunAsyncAttempt_ReturnsSoonAfterTheGatewayFinishes(t *testing.T) {
	f := newAsyncFixture(t)
	r := f.running(t, "")
	gw := newGateway(t, f.db)
	finished := make(chan time.Time, 1)
	go func() {
		c := gw.claim(r.ID)
		time.Sleep(300 * time.Millisecond) // the activity is waiting by now
		finished <- time.Now()
		gw.finish(c, store.AttemptResult{StatusCode: 200, Output: []byte(`{"y":2}`), ContentType: "application/json"})
	}()
	// A poll this slow cannot be what notices the end.
	res, err := runAttempt(f.env, f.acts, contract.RunAsyncAttemptInput{
		RequestID: r.ID, Attempt: 1, DeploymentID: f.dep.ID, PollInterval: time.Minute})
	returned := time.Now()
	require.NoError(t, err)
	require.Equal(t, contract.RunAsyncAttemptResult{Attempt: 1, StatusCode: 200, Succeeded: true}, res)
	require.Less(t, returned.Sub(<-finished), 500*time.Millisecond,
		"the waiter must be woken by the notification, well before the 2s poll")
}

func TestRunAsyncAttempt_ARerunWaitsOnTheSameAttempt(t *testing.T) {
	f := newAsyncFixture(t)
	r := f.running(t, "")
	gw := newGateway(t, f.db)
	in := contract.RunAsyncAttemptInput{RequestID: r.ID, Attempt: 1, DeploymentID: f.dep.ID, PollInterval: 50 * time.Millisecond}

	// Two runs at once, as when a worker was thought lost and the activity retried elsewhere.
	type outcome struct {
		res contract.RunAsyncAttemptResult
		err error
	}
	outs := make(chan outcome, 2)
	for range 2 {
		go func() {
			res, err := runAttempt(activityEnv(f.acts), f.acts, in)
			outs <- outcome{res, err}
		}()
	}
	c := gw.claim(r.ID)
	time.Sleep(200 * time.Millisecond)
	more, err := store.ClaimAsyncAttempts(context.Background(), f.db, gw.id, 10)
	require.NoError(t, err)
	require.Empty(t, more, "the second run must not have made a second attempt to run")
	gw.finish(c, store.AttemptResult{StatusCode: 503, Output: []byte("overloaded")})
	want := contract.RunAsyncAttemptResult{Attempt: 1, StatusCode: 503, Retryable: true, Error: modelplane.AsyncError{
		Code: modelplane.CodeModelPredictError, Message: "the model answered 503 Service Unavailable: overloaded", Attempt: 1}}
	for range 2 {
		o := <-outs
		require.NoError(t, o.err)
		require.Equal(t, want, o.res)
	}

	// A run after the attempt ended answers its result at once.
	res, err := runAttempt(f.env, f.acts, in)
	require.NoError(t, err)
	require.Equal(t, want, res)
	var n int
	require.NoError(t, f.db.Get(&n, `SELECT count(*) FROM async_attempts WHERE request_id = $1`, r.ID))
	require.Equal(t, 1, n, "three runs, one attempt")
}

func TestRunAsyncAttempt_AttemptOnADeadGatewayEndsGatewayLost(t *testing.T) {
	f := newAsyncFixture(t)
	ctx := context.Background()
	r := f.running(t, "")
	gw := newGateway(t, f.db)
	in := contract.RunAsyncAttemptInput{RequestID: r.ID, Attempt: 1, DeploymentID: f.dep.ID, PollInterval: 50 * time.Millisecond}
	done := make(chan contract.RunAsyncAttemptResult, 1)
	go func() {
		res, err := runAttempt(f.env, f.acts, in)
		if err != nil {
			t.Errorf("RunAsyncAttempt: %v", err)
		}
		done <- res
	}()
	gw.claim(r.ID)
	select {
	case res := <-done:
		t.Fatalf("the attempt ended while its gateway was alive: %+v", res)
	case <-time.After(500 * time.Millisecond):
	}
	_, err := f.db.ExecContext(ctx, `UPDATE gateway_reports SET reported_at = now() - interval '1 minute' WHERE gateway_id = $1`, gw.id)
	require.NoError(t, err)
	select {
	case res := <-done:
		require.False(t, res.Succeeded)
		require.True(t, res.Retryable, "another gateway may succeed where the lost one did not")
		require.Equal(t, modelplane.CodeGatewayLost, res.Error.Code)
		require.Equal(t, 1, res.Error.Attempt)
	case <-time.After(5 * time.Second):
		t.Fatal("an attempt on a dead gateway must end within a few polls")
	}
}

func TestClassifyAttempt_SuccessRetryAndFinalFailure(t *testing.T) {
	for _, tc := range []struct {
		name      string
		att       store.AsyncAttempt
		succeeded bool
		retryable bool
		code      modelplane.ErrorCode
	}{
		{"200", store.AsyncAttempt{StatusCode: 200}, true, false, ""},
		{"204", store.AsyncAttempt{StatusCode: 204}, true, false, ""},
		{"no answer", store.AsyncAttempt{ErrorCode: "", Error: "dial tcp: refused"}, false, true, modelplane.CodeModelUnavailable},
		{"unavailable from gateway", store.AsyncAttempt{ErrorCode: modelplane.CodeModelUnavailable, Error: "deleted"}, false, true, modelplane.CodeModelUnavailable},
		{"429", store.AsyncAttempt{StatusCode: 429}, false, true, modelplane.CodeModelPredictError},
		{"500", store.AsyncAttempt{StatusCode: 500}, false, true, modelplane.CodeModelPredictError},
		{"502", store.AsyncAttempt{StatusCode: 502}, false, true, modelplane.CodeModelPredictError},
		{"503", store.AsyncAttempt{StatusCode: 503}, false, true, modelplane.CodeModelPredictError},
		{"504", store.AsyncAttempt{StatusCode: 504}, false, true, modelplane.CodeModelPredictTimeout},
		{"501", store.AsyncAttempt{StatusCode: 501}, false, false, modelplane.CodeModelPredictError},
		{"400", store.AsyncAttempt{StatusCode: 400}, false, false, modelplane.CodeModelInvalidInput},
		{"422", store.AsyncAttempt{StatusCode: 422}, false, false, modelplane.CodeModelInvalidInput},
		{"lost", store.AsyncAttempt{ErrorCode: modelplane.CodeGatewayLost, Error: "gateway g stopped"}, false, true, modelplane.CodeGatewayLost},
		{"too large", store.AsyncAttempt{StatusCode: 200, ErrorCode: modelplane.CodeModelOutputTooLarge, Error: "over 16 MiB"}, false, false, modelplane.CodeModelOutputTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tc.att.Attempt = 2
			got := activities.ClassifyAttempt(tc.att)
			require.Equal(t, tc.succeeded, got.Succeeded, "succeeded")
			require.Equal(t, tc.retryable, got.Retryable, "retryable")
			require.Equal(t, tc.code, got.Error.Code)
			if !tc.succeeded {
				require.Equal(t, 2, got.Error.Attempt)
				require.NotEmpty(t, got.Error.Message)
			}
		})
	}
	got := activities.ClassifyAttempt(store.AsyncAttempt{Attempt: 1, StatusCode: 400, Output: []byte(`{"error":"x must be a string"}`)})
	require.Equal(t, `the model answered 400 Bad Request: {"error":"x must be a string"}`, got.Error.Message,
		"the model's answer says what was wrong with the input")
	long := make([]byte, 2000)
	for i := range long {
		long[i] = 'a'
	}
	got = activities.ClassifyAttempt(store.AsyncAttempt{Attempt: 1, StatusCode: 500, Output: long})
	require.Less(t, len(got.Error.Message), 600, "a long answer is cut")
}

// finishedWithOutput takes a running request through a successful attempt and FinishAsync.
func (f *asyncFixture) finishedWithOutput(t *testing.T, hook string) store.AsyncRequest {
	t.Helper()
	r := f.running(t, hook)
	gw := newGateway(t, f.db)
	go func() {
		c := gw.claim(r.ID)
		gw.finish(c, store.AttemptResult{StatusCode: 200, Output: []byte(`{"y":2}`), ContentType: "application/json"})
	}()
	res, err := runAttempt(f.env, f.acts, contract.RunAsyncAttemptInput{RequestID: r.ID, Attempt: 1, DeploymentID: f.dep.ID})
	require.NoError(t, err)
	require.True(t, res.Succeeded)
	_, err = f.env.ExecuteActivity(f.acts.FinishAsync, contract.FinishAsyncInput{
		RequestID: r.ID, Status: modelplane.AsyncSucceeded, OutputAttempt: 1})
	require.NoError(t, err)
	return r
}

func TestFinishAsync_KeepsTheAttemptsOutputAndEndsOnce(t *testing.T) {
	f := newAsyncFixture(t)
	f.acts.AsyncOutputRetention = 2 * time.Hour
	r := f.finishedWithOutput(t, "")
	got, err := store.GetAsyncRequest(context.Background(), f.db, "", r.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, got.Status)
	require.Equal(t, `{"y":2}`, string(got.Output))
	require.Equal(t, "application/json", got.OutputContentType)
	require.NotNil(t, got.OutputExpiresAt)
	require.WithinDuration(t, time.Now().Add(2*time.Hour), *got.OutputExpiresAt, time.Minute, "kept for AsyncOutputRetention")

	v, err := f.env.ExecuteActivity(f.acts.FinishAsync, contract.FinishAsyncInput{RequestID: r.ID, Status: modelplane.AsyncFailed,
		Errors: modelplane.AsyncErrors{{Code: modelplane.CodeModelPredictError, Message: "late", Attempt: 2}}})
	require.NoError(t, err)
	var st contract.AsyncRequestState
	require.NoError(t, v.Get(&st))
	require.Equal(t, modelplane.AsyncSucceeded, st.Status, "a retried or late FinishAsync changes nothing")
	again, err := store.GetAsyncRequest(context.Background(), f.db, "", r.ID)
	require.NoError(t, err)
	require.Empty(t, again.Errors)
	require.Equal(t, got.FinishedAt, again.FinishedAt)
}

func TestAsyncQueueActivities_LoadClaimExpire(t *testing.T) {
	f := newAsyncFixture(t)
	r := f.request(t, "https://example.com/hook")
	var st contract.AsyncRequestState
	v, err := f.env.ExecuteActivity(f.acts.LoadAsync, contract.LoadAsyncInput{RequestID: r.ID})
	require.NoError(t, err)
	require.NoError(t, v.Get(&st))
	require.Equal(t, modelplane.AsyncQueued, st.Status)
	require.Equal(t, f.dep.ID, st.DeploymentID)
	require.Equal(t, r.CreatedAt.Add(10*time.Minute).Unix(), st.ExpiresAt.Unix())
	got, err := store.GetAsyncRequest(context.Background(), f.db, "", r.ID)
	require.NoError(t, err)
	require.True(t, got.WorkflowStarted, "LoadAsync records that the workflow runs")

	// The deployment has no READY replica: the request waits, then expires.
	_, err = f.db.ExecContext(context.Background(), `UPDATE replicas SET state = 'STOPPED' WHERE deployment_id = $1`, f.dep.ID)
	require.NoError(t, err)
	var c contract.ClaimAsyncResult
	v, err = f.env.ExecuteActivity(f.acts.ClaimAsync, contract.ClaimAsyncInput{RequestID: r.ID})
	require.NoError(t, err)
	require.NoError(t, v.Get(&c))
	require.Equal(t, contract.ClaimAsyncResult{Status: modelplane.AsyncQueued, DeploymentID: f.dep.ID}, c)
	v, err = f.env.ExecuteActivity(f.acts.ExpireAsync, contract.ExpireAsyncInput{RequestID: r.ID})
	require.NoError(t, err)
	require.NoError(t, v.Get(&st))
	require.Equal(t, modelplane.AsyncExpired, st.Status)
	require.Equal(t, modelplane.WebhookPending, st.WebhookStatus)
	v, err = f.env.ExecuteActivity(f.acts.ClaimAsync, contract.ClaimAsyncInput{RequestID: r.ID})
	require.NoError(t, err)
	require.NoError(t, v.Get(&c))
	require.Equal(t, contract.ClaimAsyncResult{Status: modelplane.AsyncExpired, WebhookStatus: modelplane.WebhookPending, DeploymentID: f.dep.ID}, c)

	_, err = f.db.ExecContext(context.Background(), `UPDATE deployments SET status = 'INACTIVE' WHERE id = $1`, f.dep.ID)
	require.NoError(t, err)
	other := f.request(t, "")
	v, err = f.env.ExecuteActivity(f.acts.ClaimAsync, contract.ClaimAsyncInput{RequestID: other.ID})
	require.NoError(t, err)
	require.NoError(t, v.Get(&c))
	require.Equal(t, "the deployment is deactivated", c.Unavailable)
	require.False(t, c.Claimed)

	_, err = f.env.ExecuteActivity(f.acts.LoadAsync, contract.LoadAsyncInput{RequestID: "nosuchrequest000"})
	require.Equal(t, contract.ErrTypeAsyncRequestGone, appErrType(err), "a deleted request ends the workflow's retries: %v", err)
}

// hookReceiver records the webhook deliveries it gets and answers each with the next status
// of its list (200 once the list is used up).
type hookReceiver struct {
	mu       sync.Mutex
	statuses []int
	got      []delivery
}

type delivery struct {
	header http.Header
	body   []byte
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	h.got = append(h.got, delivery{header: r.Header.Clone(), body: body})
	status := http.StatusOK
	if len(h.statuses) > 0 {
		status, h.statuses = h.statuses[0], h.statuses[1:]
	}
	w.WriteHeader(status)
}

func TestDeliverWebhook_SignedWithTheSameDeliveryIDOnEveryTry(t *testing.T) {
	f := newAsyncFixture(t)
	ctx := context.Background()
	secret, err := store.RotateWebhookSecret(ctx, f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	recv := &hookReceiver{statuses: []int{http.StatusInternalServerError}}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	r := f.finishedWithOutput(t, srv.URL+"/hook?token=abc")

	_, err = f.env.ExecuteActivity(f.acts.DeliverWebhook, contract.DeliverWebhookInput{RequestID: r.ID})
	require.Error(t, err, "a 500 is a failed try")
	require.Empty(t, appErrType(err), "and one that is retried: %v", err)
	_, err = f.env.ExecuteActivity(f.acts.DeliverWebhook, contract.DeliverWebhookInput{RequestID: r.ID})
	require.NoError(t, err)

	require.Len(t, recv.got, 2)
	for _, d := range recv.got {
		require.NoError(t, webhook.Verify(secret.Secret, d.header, d.body, time.Now(), time.Minute), "the receiver can check the signature")
		require.Equal(t, r.WebhookDeliveryID, d.header.Get(webhook.HeaderDeliveryID))
		require.Equal(t, "application/json", d.header.Get("Content-Type"))
	}
	require.Equal(t, string(recv.got[0].body), string(recv.got[1].body), "a retry sends the same body")
	var p struct {
		RequestID    string          `json:"request_id"`
		ModelID      string          `json:"model_id"`
		DeploymentID string          `json:"deployment_id"`
		Type         string          `json:"type"`
		Time         time.Time       `json:"time"`
		Data         json.RawMessage `json:"data"`
		Errors       []any           `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(recv.got[1].body, &p))
	require.Equal(t, r.ID, p.RequestID)
	require.Equal(t, f.m.ID, p.ModelID)
	require.Equal(t, f.dep.ID, p.DeploymentID)
	require.Equal(t, webhook.TypeAsyncRequestCompleted, p.Type)
	require.JSONEq(t, `{"y":2}`, string(p.Data))
	require.NotNil(t, p.Errors)
	require.Empty(t, p.Errors)
	require.WithinDuration(t, time.Now(), p.Time, time.Minute)

	v, err := f.env.ExecuteActivity(f.acts.SetAsyncWebhookResult, contract.SetAsyncWebhookResultInput{RequestID: r.ID, Delivered: true})
	require.NoError(t, err)
	var st contract.AsyncRequestState
	require.NoError(t, v.Get(&st))
	require.Equal(t, modelplane.WebhookSucceeded, st.WebhookStatus)
	_, err = f.env.ExecuteActivity(f.acts.DeliverWebhook, contract.DeliverWebhookInput{RequestID: r.ID})
	require.NoError(t, err)
	require.Len(t, recv.got, 2, "a webhook recorded as delivered is not sent again")
}

func TestDeliverWebhook_FailedRequestCarriesItsErrors(t *testing.T) {
	f := newAsyncFixture(t)
	ctx := context.Background()
	secret, err := store.RotateWebhookSecret(ctx, f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	recv := &hookReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	r := f.running(t, srv.URL)
	_, err = f.env.ExecuteActivity(f.acts.FinishAsync, contract.FinishAsyncInput{RequestID: r.ID, Status: modelplane.AsyncFailed,
		Errors: modelplane.AsyncErrors{{Code: modelplane.CodeModelInvalidInput, Message: "bad x", Attempt: 1}}})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.DeliverWebhook, contract.DeliverWebhookInput{RequestID: r.ID})
	require.NoError(t, err)
	require.Len(t, recv.got, 1)
	require.NoError(t, webhook.Verify(secret.Secret, recv.got[0].header, recv.got[0].body, time.Now(), time.Minute))
	var p struct {
		Data   json.RawMessage      `json:"data"`
		Errors []webhook.ErrorEntry `json:"errors"`
	}
	require.NoError(t, json.Unmarshal(recv.got[0].body, &p))
	require.Equal(t, "null", string(p.Data))
	require.Equal(t, []webhook.ErrorEntry{{Code: modelplane.CodeModelInvalidInput, Message: "bad x", Attempt: 1}}, p.Errors)
}

func TestDeliverWebhook_RefusedAddressOrNoSecretIsNotRetried(t *testing.T) {
	f := newAsyncFixture(t)
	recv := &hookReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	r := f.finishedWithOutput(t, srv.URL)

	_, err := f.env.ExecuteActivity(f.acts.DeliverWebhook, contract.DeliverWebhookInput{RequestID: r.ID})
	require.Equal(t, contract.ErrTypeWebhookRefused, appErrType(err), "a workspace without a secret: %v", err)

	_, err = store.RotateWebhookSecret(context.Background(), f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	strict := &activities.Activities{DB: f.db}
	_, err = activityEnv(strict).ExecuteActivity(strict.DeliverWebhook, contract.DeliverWebhookInput{RequestID: r.ID})
	require.Equal(t, contract.ErrTypeWebhookRefused, appErrType(err), "loopback without allow-private: %v", err)
	require.Empty(t, recv.got, "nothing reached the receiver")
}

func TestDeliverWebhook_NumericOrEmbeddedAddressIsRefusedOnceWithItsReason(t *testing.T) {
	f := newAsyncFixture(t)
	_, err := store.RotateWebhookSecret(context.Background(), f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	strict := &activities.Activities{DB: f.db}
	for _, tc := range []struct {
		name, hook string
		acts       *activities.Activities
		want       string
	}{
		// Stored before intake refused them: a numeric form is refused whatever is allowed.
		{"hex host", "http://0x7f000001:9/h", f.acts, `host "0x7f000001" is a numeric address`},
		{"shortened host", "http://127.1:9/h", f.acts, `host "127.1" is a numeric address`},
		{"NAT64 of loopback", "http://[64:ff9b::7f00:1]:9/h", strict, "NAT64 IPv6 embedding 127.0.0.1"},
		{"6to4 of loopback", "http://[2002:7f00:1::]:9/h", strict, "6to4 IPv6 embedding 127.0.0.1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := f.finishedWithOutput(t, tc.hook)
			_, err := activityEnv(tc.acts).ExecuteActivity(tc.acts.DeliverWebhook, contract.DeliverWebhookInput{RequestID: r.ID})
			require.Equal(t, contract.ErrTypeWebhookRefused, appErrType(err), "not retried: %v", err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}

// FakeAsyncRequest stands in for the AsyncRequest workflow: it waits for the dispatch signal
// (when asked to) and returns the request ID it was started with.
func FakeAsyncRequest(ctx workflow.Context, in contract.AsyncRequestInput) (string, error) {
	workflow.GetSignalChannel(ctx, "async_dispatch").Receive(ctx, nil)
	return in.RequestID, nil
}

func TestAsyncTemporalActivities_OnRealServer(t *testing.T) {
	f := newAsyncFixture(t)
	ctx := context.Background()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	w := sdkworker.New(c, contract.TaskQueue, sdkworker.Options{})
	w.RegisterWorkflowWithOptions(FakeAsyncRequest, workflow.RegisterOptions{Name: "AsyncRequest"})
	require.NoError(t, w.Start())
	defer w.Stop()
	f.acts.Temporal = c
	prefix := "async:"

	t.Run("StartUnstartedAsync", func(t *testing.T) {
		old := f.request(t, "")
		started := f.request(t, "")
		fresh := f.request(t, "")
		_, err := f.db.ExecContext(ctx, `UPDATE async_requests SET workflow_wanted_at = now() - interval '1 minute' WHERE id IN ($1, $2)`, old.ID, started.ID)
		require.NoError(t, err)
		_, err = f.db.ExecContext(ctx, `UPDATE async_requests SET workflow_wanted_at = now() WHERE id = $1`, fresh.ID)
		require.NoError(t, err)
		_, err = store.MarkAsyncWorkflowStarted(ctx, f.db, started.ID)
		require.NoError(t, err)
		// Other tests' requests are not this test's to start.
		_, err = f.db.ExecContext(ctx, `UPDATE async_requests SET workflow_started = true WHERE id NOT IN ($1, $2, $3)`, old.ID, started.ID, fresh.ID)
		require.NoError(t, err)

		in := contract.StartUnstartedAsyncInput{Before: time.Now().Add(-30 * time.Second)}
		var res contract.StartUnstartedAsyncResult
		v, err := f.env.ExecuteActivity(f.acts.StartUnstartedAsync, in)
		require.NoError(t, err)
		require.NoError(t, v.Get(&res))
		require.Equal(t, 1, res.Started, "only the old request without a workflow")
		require.NoError(t, c.SignalWorkflow(ctx, prefix+old.ID, "", "async_dispatch", nil))
		var got string
		require.NoError(t, c.GetWorkflow(ctx, prefix+old.ID, "").Get(ctx, &got))
		require.Equal(t, old.ID, got, "the workflow gets the request ID as its input")
		for _, id := range []string{started.ID, fresh.ID} {
			_, err = c.DescribeWorkflowExecution(ctx, prefix+id, "")
			var notFound *serviceerror.NotFound
			require.True(t, errors.As(err, &notFound), "request %s must not have been started: %v", id, err)
		}

		// The workflow ended without marking the row (the fake does not), as one terminated
		// before its first step would: the request still needs a run, and gets one.
		v, err = f.env.ExecuteActivity(f.acts.StartUnstartedAsync, in)
		require.NoError(t, err)
		require.NoError(t, v.Get(&res))
		require.Equal(t, 1, res.Started, "a request whose workflow ended without starting it is started again")
	})

}

func TestDispatchAsyncNext_StartsTheHeadsTheDeploymentHasRoomFor(t *testing.T) {
	f := newAsyncFixture(t)
	ctx := context.Background()
	// Room for one more beside the request running: the older of the two queued is the head.
	_, err := f.db.ExecContext(ctx, `INSERT INTO replicas (id, deployment_id, state) VALUES ($1, $2, 'READY')`, modelplane.NewID(12), f.dep.ID)
	require.NoError(t, err)
	f.running(t, "")
	head := f.request(t, "")
	behind := f.request(t, "")
	_, err = f.db.ExecContext(ctx, `UPDATE async_requests SET created_at = created_at - interval '1 minute' WHERE id = $1`, head.ID)
	require.NoError(t, err)
	var res contract.DispatchAsyncNextResult
	v, err := f.env.ExecuteActivity(f.acts.DispatchAsyncNext, contract.DispatchAsyncNextInput{DeploymentID: f.dep.ID})
	require.NoError(t, err)
	require.NoError(t, v.Get(&res))
	require.Equal(t, 1, res.Started)
	got, err := store.GetAsyncRequest(ctx, f.db, "", head.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncInProgress, got.Status, "the head is started")
	att, err := store.GetAsyncAttempt(ctx, f.db, head.ID, 1)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptPending, att.State, "its first attempt waits for a gateway")
	got, err = store.GetAsyncRequest(ctx, f.db, "", behind.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncQueued, got.Status, "the one behind waits")
}

func TestPurgeAsync_DropsExpiredOutputs(t *testing.T) {
	f := newAsyncFixture(t)
	r := f.finishedWithOutput(t, "")
	_, err := f.db.ExecContext(context.Background(), `UPDATE async_requests SET output_expires_at = now() - interval '1 second' WHERE id = $1`, r.ID)
	require.NoError(t, err)
	v, err := f.env.ExecuteActivity(f.acts.PurgeAsync, contract.PurgeAsyncInput{Now: time.Now(), FinishedBefore: time.Now().Add(-7 * 24 * time.Hour)})
	require.NoError(t, err)
	var res contract.PurgeAsyncResult
	require.NoError(t, v.Get(&res))
	require.GreaterOrEqual(t, res.Outputs, int64(1))
	got, err := store.GetAsyncRequest(context.Background(), f.db, "", r.ID)
	require.NoError(t, err)
	require.Nil(t, got.Output)
}

func TestAsyncRequestWorkflow_EndToEndOnRealServer(t *testing.T) {
	f := newAsyncFixture(t)
	ctx := context.Background()
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	require.NoError(t, worker.EnsureSearchAttributes(ctx, c, ts.GetDefaultNamespace()))
	f.acts.Temporal = c
	w := worker.New(c, f.acts)
	require.NoError(t, w.Start())
	defer w.Stop()

	secret, err := store.RotateWebhookSecret(ctx, f.db, f.m.WorkspaceID)
	require.NoError(t, err)
	recv := &hookReceiver{}
	srv := httptest.NewServer(recv)
	t.Cleanup(srv.Close)
	r, err := store.InsertAsyncRequest(ctx, f.db, store.NewAsyncRequest{
		WorkspaceID: f.m.WorkspaceID, ModelID: f.m.ID, DeploymentID: f.dep.ID, WebhookEndpoint: srv.URL,
		Priority: 1, MaxTimeInQueueSeconds: 600, ModelInput: []byte(`{"x":1}`),
		RetryConfig: modelplane.RetryConfig{MaxAttempts: 3, InitialDelayMs: 100, MaxDelayMs: 200},
	}, 1000)
	require.NoError(t, err)

	// A gateway starts the request without a workflow; its first attempt finds the model
	// overloaded, which wants the workflow for the retry. The second attempt succeeds.
	starts, err := store.StartAsyncHeads(ctx, f.db, f.dep.ID, 10, "")
	require.NoError(t, err)
	require.Equal(t, 1, starts.Started)
	gw := newGateway(t, f.db)
	first := gw.finish(gw.claim(r.ID), store.AttemptResult{StatusCode: 503, Output: []byte("busy")})
	require.Equal(t, store.AttemptConclusion{Recorded: true, WantsWorkflow: true}, first)
	go func() {
		gw.finish(gw.claim(r.ID), store.AttemptResult{StatusCode: 200, Output: []byte(`{"y":3}`), ContentType: "application/json"})
	}()
	started, err := contract.StartAsyncRequest(ctx, c, r.ID)
	require.NoError(t, err)
	require.True(t, started)
	run := c.GetWorkflow(ctx, contract.AsyncWorkflowID(r.ID), "")
	wctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var res contract.AsyncRequestResult
	require.NoError(t, run.Get(wctx, &res))
	require.Equal(t, contract.AsyncRequestResult{Status: modelplane.AsyncSucceeded, WebhookStatus: modelplane.WebhookSucceeded, Attempts: 2}, res)

	got, err := store.GetAsyncRequest(ctx, f.db, "", r.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, got.Status)
	require.Equal(t, modelplane.WebhookSucceeded, got.WebhookStatus)
	require.True(t, got.WorkflowStarted)
	require.Equal(t, 2, got.Attempts)
	require.Nil(t, got.Output, "the delivered webhook carried the output")
	require.Len(t, recv.got, 1)
	d := recv.got[0]
	require.NoError(t, webhook.Verify(secret.Secret, d.header, d.body, time.Now(), time.Minute))
	require.Equal(t, r.WebhookDeliveryID, d.header.Get(webhook.HeaderDeliveryID))
	var p struct {
		Data json.RawMessage `json:"data"`
	}
	require.NoError(t, json.Unmarshal(d.body, &p))
	require.JSONEq(t, `{"y":3}`, string(p.Data))
}
