package store_test

import (
	"context"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// asyncDeployment makes an ACTIVE deployment of model m with ready READY replicas and the
// given concurrency target.
func asyncDeployment(t *testing.T, db *sqlx.DB, m store.Model, ready, concurrency int) store.Deployment {
	t.Helper()
	ctx := context.Background()
	s := settings.DefaultAutoscalingSettings()
	s.ConcurrencyTarget = concurrency
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, AutoscalingSettings: s})
	require.NoError(t, err)
	_, err = db.ExecContext(ctx, `UPDATE deployments SET status = 'ACTIVE' WHERE id = $1`, d.ID)
	require.NoError(t, err)
	for range ready {
		_, err = db.ExecContext(ctx, `INSERT INTO replicas (id, deployment_id, state) VALUES ($1, $2, 'READY')`, modelplane.NewID(12), d.ID)
		require.NoError(t, err)
	}
	return d
}

// asyncOpts describe a request for insertAsync.
type asyncOpts struct {
	priority    int
	environment string
	webhook     string
	// age places the request's created_at that long ago, for a queue order that does not
	// depend on how fast the inserts ran.
	age time.Duration
}

func insertAsync(t *testing.T, db *sqlx.DB, m store.Model, deploymentID string, o asyncOpts) store.AsyncRequest {
	t.Helper()
	ctx := context.Background()
	r, err := store.InsertAsyncRequest(ctx, db, store.NewAsyncRequest{
		WorkspaceID: m.WorkspaceID, ModelID: m.ID, DeploymentID: deploymentID, Environment: o.environment,
		WebhookEndpoint: o.webhook, Priority: o.priority, MaxTimeInQueueSeconds: 600,
		RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(`{"x":1}`),
	}, 1000)
	require.NoError(t, err)
	if o.age > 0 {
		_, err = db.ExecContext(ctx, `UPDATE async_requests SET created_at = now() - $2 * interval '1 microsecond' WHERE id = $1`,
			r.ID, o.age.Microseconds())
		require.NoError(t, err)
		r, err = store.GetAsyncRequest(ctx, db, "", r.ID)
		require.NoError(t, err)
	}
	return r
}

func asyncStatus(t *testing.T, db *sqlx.DB, id string) store.AsyncRequest {
	t.Helper()
	r, err := store.GetAsyncRequest(context.Background(), db, "", id)
	require.NoError(t, err)
	return r
}

func claim(t *testing.T, db *sqlx.DB, id string) store.AsyncClaim {
	t.Helper()
	c, err := store.ClaimAsyncRequest(context.Background(), db, id)
	require.NoError(t, err)
	return c
}

func TestInsertAsyncRequest_RecordsAQueuedRequestWithItsDeliveryID(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 0, 1)
	plain := insertAsync(t, db, m, d.ID, asyncOpts{})
	hooked := insertAsync(t, db, m, d.ID, asyncOpts{webhook: "https://example.com/hook", priority: 2})

	got := asyncStatus(t, db, hooked.ID)
	require.Regexp(t, `^[a-z0-9]{16}$`, got.ID)
	require.Equal(t, modelplane.AsyncQueued, got.Status)
	require.Equal(t, modelplane.WebhookPending, got.WebhookStatus)
	require.Regexp(t, `^whd_[a-z0-9]{24}$`, got.WebhookDeliveryID)
	require.Equal(t, 2, got.Priority)
	require.Equal(t, modelplane.DefaultRetryConfig(), got.RetryConfig)
	require.Equal(t, `{"x":1}`, string(got.ModelInput))
	require.False(t, got.WorkflowStarted)
	require.Equal(t, got.CreatedAt.Add(600*time.Second), got.ExpiresAt)
	require.Equal(t, modelplane.WebhookNone, asyncStatus(t, db, plain.ID).WebhookStatus)
	require.NotEqual(t, plain.WebhookDeliveryID, got.WebhookDeliveryID, "each request has its own delivery ID")

	_, err := store.GetAsyncRequest(context.Background(), db, newModel(t, db).WorkspaceID, hooked.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "another workspace must not see the request")
}

func TestInsertAsyncRequest_OverTheOpenLimitIsErrLimit(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 0, 1)
	n := store.NewAsyncRequest{WorkspaceID: m.WorkspaceID, ModelID: m.ID, DeploymentID: d.ID,
		MaxTimeInQueueSeconds: 600, RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(`1`)}
	first, err := store.InsertAsyncRequest(ctx, db, n, 2)
	require.NoError(t, err)
	_, err = store.InsertAsyncRequest(ctx, db, n, 2)
	require.NoError(t, err)
	_, err = store.InsertAsyncRequest(ctx, db, n, 2)
	require.ErrorIs(t, err, store.ErrLimit, "a third open request over a limit of two")

	// Another workspace has its own count.
	other := newModel(t, db)
	od := asyncDeployment(t, db, other, 0, 1)
	_, err = store.InsertAsyncRequest(ctx, db, store.NewAsyncRequest{WorkspaceID: other.WorkspaceID, ModelID: other.ID,
		DeploymentID: od.ID, MaxTimeInQueueSeconds: 600, RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(`1`)}, 2)
	require.NoError(t, err)

	// A request that ended no longer counts.
	_, canceled, err := store.CancelAsyncRequest(ctx, db, m.WorkspaceID, first.ID)
	require.NoError(t, err)
	require.True(t, canceled)
	_, err = store.InsertAsyncRequest(ctx, db, n, 2)
	require.NoError(t, err, "a canceled request must free its place under the limit")
}

func TestCancelAsyncRequest_OnlyAQueuedRequestIsCanceled(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 1, 1)
	queued := insertAsync(t, db, m, d.ID, asyncOpts{webhook: "https://example.com/hook", age: 2 * time.Second})
	running := insertAsync(t, db, m, d.ID, asyncOpts{age: 3 * time.Second})
	require.True(t, claim(t, db, running.ID).Claimed)

	got, canceled, err := store.CancelAsyncRequest(ctx, db, m.WorkspaceID, queued.ID)
	require.NoError(t, err)
	require.True(t, canceled)
	require.Equal(t, modelplane.AsyncCanceled, got.Status)
	require.Equal(t, modelplane.WebhookCanceled, got.WebhookStatus, "a canceled request's webhook is never sent")
	require.NotNil(t, got.FinishedAt)

	got, canceled, err = store.CancelAsyncRequest(ctx, db, m.WorkspaceID, queued.ID)
	require.NoError(t, err)
	require.False(t, canceled, "a second cancel finds it canceled already")
	require.Equal(t, modelplane.AsyncCanceled, got.Status)

	got, canceled, err = store.CancelAsyncRequest(ctx, db, m.WorkspaceID, running.ID)
	require.NoError(t, err)
	require.False(t, canceled, "a request in progress cannot be canceled")
	require.Equal(t, modelplane.AsyncInProgress, got.Status)
	require.Equal(t, modelplane.AsyncInProgress, asyncStatus(t, db, running.ID).Status)

	_, _, err = store.CancelAsyncRequest(ctx, db, newModel(t, db).WorkspaceID, running.ID)
	require.ErrorIs(t, err, store.ErrNotFound, "another workspace cannot cancel it")
}

func TestClaimAsyncRequest_CapacityIsReadyReplicasTimesConcurrencyTarget(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 2, 2) // room for 4
	var rs []store.AsyncRequest
	for i := range 6 {
		rs = append(rs, insertAsync(t, db, m, d.ID, asyncOpts{age: time.Duration(10-i) * time.Second}))
	}

	c := claim(t, db, rs[5].ID)
	require.False(t, c.Claimed, "the sixth in line must wait while five are ahead of it")
	require.Equal(t, modelplane.AsyncQueued, c.Status)
	require.Equal(t, 5, c.Ahead)
	require.Equal(t, 4, c.Capacity.Free())
	require.Empty(t, c.Capacity.Unavailable())

	c = claim(t, db, rs[3].ID)
	require.True(t, c.Claimed, "the fourth in line fits in a room of four: %+v", c)
	require.Equal(t, modelplane.AsyncInProgress, c.Status)
	for _, r := range rs[:3] {
		require.True(t, claim(t, db, r.ID).Claimed, "request %s", r.ID)
	}
	c = claim(t, db, rs[4].ID)
	require.False(t, c.Claimed, "four run: the deployment is full")
	require.Equal(t, 0, c.Ahead)
	require.Equal(t, 0, c.Capacity.Free())
	counts, err := store.CountAsyncQueue(ctx, db, d.ID)
	require.NoError(t, err)
	require.Equal(t, store.AsyncQueueCounts{Queued: 2, InProgress: 4}, counts)

	again := claim(t, db, rs[0].ID)
	require.True(t, again.Claimed, "a claimed request stays claimed when asked again")
	require.Equal(t, modelplane.AsyncInProgress, again.Status)
	require.NotNil(t, asyncStatus(t, db, rs[0].ID).StartedAt)

	_, err = store.FinishAsyncRequest(ctx, db, rs[0].ID, store.AsyncOutcome{Status: modelplane.AsyncSucceeded, Output: []byte(`{}`), KeepOutput: time.Hour})
	require.NoError(t, err)
	require.False(t, claim(t, db, rs[5].ID).Claimed, "the one behind must not pass the head of the queue")
	require.True(t, claim(t, db, rs[4].ID).Claimed, "a finished request frees its place for the next in line")

	// Fewer READY replicas, less room.
	_, err = db.ExecContext(ctx, `UPDATE replicas SET state = 'STOPPED' WHERE deployment_id = $1`, d.ID)
	require.NoError(t, err)
	c = claim(t, db, rs[5].ID)
	require.False(t, c.Claimed)
	require.Equal(t, 0, c.Capacity.ReadyReplicas)
}

func TestClaimAsyncRequest_ConcurrentClaimsRespectCapacity(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	// Races are caught by chance: many rounds of twelve requests claimed three times each at
	// once, the first claims finishing at once to shift the queue under the others.
	for round := range 40 {
		d := asyncDeployment(t, db, m, 1, 3)
		var rs []store.AsyncRequest
		for i := range 12 {
			rs = append(rs, insertAsync(t, db, m, d.ID, asyncOpts{age: time.Duration(20-i) * time.Second}))
		}
		var wg sync.WaitGroup
		for try := range 3 {
			for _, r := range rs {
				wg.Add(1)
				go func() {
					defer wg.Done()
					c, err := store.ClaimAsyncRequest(ctx, db, r.ID)
					if err != nil {
						t.Errorf("claim %s: %v", r.ID, err)
						return
					}
					if c.Claimed && try == 0 {
						_, err = store.FinishAsyncRequest(ctx, db, r.ID, store.AsyncOutcome{Status: modelplane.AsyncSucceeded})
						if err != nil {
							t.Errorf("finish %s: %v", r.ID, err)
						}
					}
				}()
			}
		}
		wg.Wait()
		counts, err := store.CountAsyncQueue(ctx, db, d.ID)
		require.NoError(t, err)
		require.LessOrEqual(t, counts.InProgress, 3, "round %d: more requests run than the room of three", round)
	}
}

func TestClaimAsyncRequest_LowerPriorityNumberGoesFirstThenTheOlder(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 1, 1)
	oldLow := insertAsync(t, db, m, d.ID, asyncOpts{priority: 2, age: 30 * time.Second})
	newUrgent := insertAsync(t, db, m, d.ID, asyncOpts{priority: 0, age: time.Second})
	oldNormal := insertAsync(t, db, m, d.ID, asyncOpts{priority: 1, age: 20 * time.Second})
	newNormal := insertAsync(t, db, m, d.ID, asyncOpts{priority: 1, age: 10 * time.Second})

	c := claim(t, db, oldLow.ID)
	require.False(t, c.Claimed)
	require.Equal(t, 3, c.Ahead, "every request of a lower priority number goes first, however new")
	c = claim(t, db, newNormal.ID)
	require.False(t, c.Claimed)
	require.Equal(t, 2, c.Ahead, "the urgent one and the older normal one go first")
	require.False(t, claim(t, db, oldNormal.ID).Claimed)
	require.True(t, claim(t, db, newUrgent.ID).Claimed)

	s, err := store.StartAsyncHeads(context.Background(), db, d.ID, 10, "")
	require.NoError(t, err)
	require.Zero(t, s.Started, "a full deployment starts nothing")
}

func TestClaimAsyncRequest_DeploymentThatWillNotServeIsUnavailable(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	for status, want := range map[string]string{
		"INACTIVE":       "the deployment is deactivated",
		"DEPLOY_FAILED":  "the deployment is DEPLOY_FAILED",
		"SCALED_TO_ZERO": "",
		"WAKING_UP":      "",
	} {
		d := asyncDeployment(t, db, m, 0, 1)
		_, err := db.ExecContext(ctx, `UPDATE deployments SET status = $2 WHERE id = $1`, d.ID, status)
		require.NoError(t, err)
		r := insertAsync(t, db, m, d.ID, asyncOpts{})
		c := claim(t, db, r.ID)
		require.False(t, c.Claimed, status)
		require.Equal(t, want, c.Capacity.Unavailable(), status)
	}
	d := asyncDeployment(t, db, m, 2, 1)
	r := insertAsync(t, db, m, d.ID, asyncOpts{})
	require.NoError(t, store.MarkDeploymentDeleted(ctx, db, m.ID, d.ID))
	c := claim(t, db, r.ID)
	require.False(t, c.Claimed, "a deleted deployment's replicas must not take new requests")
	require.Equal(t, "the deployment was deleted", c.Capacity.Unavailable())
}

func TestClaimAsyncRequest_EndedRequestReportsItsStatus(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 1, 1)
	r := insertAsync(t, db, m, d.ID, asyncOpts{})
	_, _, err := store.CancelAsyncRequest(context.Background(), db, m.WorkspaceID, r.ID)
	require.NoError(t, err)
	c := claim(t, db, r.ID)
	require.False(t, c.Claimed)
	require.Equal(t, modelplane.AsyncCanceled, c.Status)
	require.Equal(t, d.ID, c.DeploymentID)

	_, err = store.ClaimAsyncRequest(context.Background(), db, "nosuchrequest000")
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestAsyncRequests_QueuedOnesFollowTheirEnvironment(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d1 := asyncDeployment(t, db, m, 0, 1)
	d2 := asyncDeployment(t, db, m, 1, 1)
	_, err := store.CreateEnvironment(ctx, db, store.Environment{ModelID: m.ID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, "staging", d1.ID))

	viaEnv := insertAsync(t, db, m, d1.ID, asyncOpts{environment: "staging", priority: 0, age: 5 * time.Second})
	direct := insertAsync(t, db, m, d1.ID, asyncOpts{age: 4 * time.Second})
	otherEnv := insertAsync(t, db, m, d1.ID, asyncOpts{environment: "production", age: 3 * time.Second})
	ended := insertAsync(t, db, m, d1.ID, asyncOpts{environment: "staging", age: 2 * time.Second})
	_, _, err = store.CancelAsyncRequest(ctx, db, m.WorkspaceID, ended.ID)
	require.NoError(t, err)

	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, "staging", d2.ID))
	moved := asyncStatus(t, db, viaEnv.ID)
	require.Equal(t, d2.ID, moved.DeploymentID, "a queued request to the environment follows it")
	require.True(t, moved.CreatedAt.Equal(viaEnv.CreatedAt), "and keeps its place")
	require.Equal(t, d1.ID, asyncStatus(t, db, direct.ID).DeploymentID, "a request to the deployment itself stays")
	require.Equal(t, d1.ID, asyncStatus(t, db, otherEnv.ID).DeploymentID, "another environment's request stays")
	require.Equal(t, d1.ID, asyncStatus(t, db, ended.ID).DeploymentID, "an ended request stays")
	c := claim(t, db, viaEnv.ID)
	require.True(t, c.Claimed, "the new deployment has room: %+v", c)
	require.Equal(t, d2.ID, c.DeploymentID)

	// A request recorded for the deployment the environment just left (a gateway with an old
	// routing table) moves when it claims.
	late := insertAsync(t, db, m, d1.ID, asyncOpts{environment: "staging"})
	c = claim(t, db, late.ID)
	require.Equal(t, d2.ID, c.DeploymentID)
	require.Equal(t, d2.ID, asyncStatus(t, db, late.ID).DeploymentID)
}

func TestExpireAsyncRequest_OnlyAQueuedRequestExpires(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 1, 1)
	running := insertAsync(t, db, m, d.ID, asyncOpts{age: time.Minute})
	require.True(t, claim(t, db, running.ID).Claimed)
	queued := insertAsync(t, db, m, d.ID, asyncOpts{webhook: "https://example.com/hook"})

	got, err := store.ExpireAsyncRequest(ctx, db, queued.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncExpired, got.Status)
	require.Equal(t, modelplane.WebhookPending, got.WebhookStatus, "an expired request's webhook is still sent")
	require.Equal(t, modelplane.AsyncErrors{{Code: modelplane.CodeAsyncRequestExpired,
		Message: "the request waited longer than max_time_in_queue_seconds"}}, got.Errors)
	require.NotNil(t, got.FinishedAt)
	again, err := store.ExpireAsyncRequest(ctx, db, queued.ID)
	require.NoError(t, err)
	require.Len(t, again.Errors, 1, "expiring twice records one error")

	got, err = store.ExpireAsyncRequest(ctx, db, running.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncInProgress, got.Status, "a running request does not expire")
	require.Empty(t, got.Errors)
}

func TestFinishAsyncRequest_KeepsTheOutputAndIsIdempotent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 1, 1)
	r := insertAsync(t, db, m, d.ID, asyncOpts{})
	require.True(t, claim(t, db, r.ID).Claimed)

	got, err := store.FinishAsyncRequest(ctx, db, r.ID, store.AsyncOutcome{Status: modelplane.AsyncSucceeded,
		Output: []byte(`{"y":2}`), ContentType: "application/json", KeepOutput: time.Hour})
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, got.Status)
	require.Equal(t, `{"y":2}`, string(got.Output))
	require.Equal(t, "application/json", got.OutputContentType)
	require.NotNil(t, got.OutputExpiresAt)
	require.WithinDuration(t, time.Now().Add(time.Hour), *got.OutputExpiresAt, time.Minute)

	again, err := store.FinishAsyncRequest(ctx, db, r.ID, store.AsyncOutcome{Status: modelplane.AsyncFailed,
		Errors: modelplane.AsyncErrors{{Code: modelplane.CodeModelPredictError, Message: "late"}}})
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, again.Status, "a request ends once")
	require.Empty(t, again.Errors)
	require.Equal(t, `{"y":2}`, string(again.Output))

	// A queued request whose deployment will not serve it fails from the queue.
	queued := insertAsync(t, db, m, d.ID, asyncOpts{})
	got, err = store.FinishAsyncRequest(ctx, db, queued.ID, store.AsyncOutcome{Status: modelplane.AsyncFailed,
		Errors: modelplane.AsyncErrors{{Code: modelplane.CodeModelUnavailable, Message: "the deployment is deactivated"}}})
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncFailed, got.Status)
	require.Nil(t, got.Output)
	require.Nil(t, got.OutputExpiresAt, "no output, nothing to expire")

	canceled := insertAsync(t, db, m, d.ID, asyncOpts{})
	_, _, err = store.CancelAsyncRequest(ctx, db, m.WorkspaceID, canceled.ID)
	require.NoError(t, err)
	got, err = store.FinishAsyncRequest(ctx, db, canceled.ID, store.AsyncOutcome{Status: modelplane.AsyncFailed})
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncCanceled, got.Status, "a canceled request stays canceled")
}

func TestSetAsyncWebhookResult_DeliveredDropsTheOutputFailedKeepsIt(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 2, 1)
	ok := insertAsync(t, db, m, d.ID, asyncOpts{webhook: "https://example.com/a", age: 2 * time.Second})
	bad := insertAsync(t, db, m, d.ID, asyncOpts{webhook: "https://example.com/b", age: time.Second})
	for _, r := range []store.AsyncRequest{ok, bad} {
		require.True(t, claim(t, db, r.ID).Claimed)
		_, err := store.FinishAsyncRequest(ctx, db, r.ID, store.AsyncOutcome{Status: modelplane.AsyncSucceeded, Output: []byte(`1`), KeepOutput: time.Hour})
		require.NoError(t, err)
	}

	got, err := store.SetAsyncWebhookResult(ctx, db, ok.ID, true, "")
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, got.Status)
	require.Equal(t, modelplane.WebhookSucceeded, got.WebhookStatus)
	require.Nil(t, got.Output, "the webhook carried the output")
	require.Nil(t, got.OutputExpiresAt)

	for range 2 {
		got, err = store.SetAsyncWebhookResult(ctx, db, bad.ID, false, "answered 500")
		require.NoError(t, err)
	}
	require.Equal(t, modelplane.AsyncWebhookFailed, got.Status)
	require.Equal(t, modelplane.WebhookFailed, got.WebhookStatus)
	require.Equal(t, `1`, string(got.Output), "the output stays readable when the webhook failed")
	require.Equal(t, modelplane.AsyncErrors{{Code: modelplane.CodeWebhookDeliveryFailed, Message: "answered 500"}}, got.Errors,
		"a repeated failure records one error")
}

func TestUnstartedAsyncRequests_ListsThoseThatWantedTheirWorkflowAWhileAndHaveNone(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 0, 1)
	want := func(r store.AsyncRequest, ago time.Duration) {
		_, err := db.ExecContext(ctx, `UPDATE async_requests SET workflow_wanted_at = now() - $2 * interval '1 second' WHERE id = $1`, r.ID, ago.Seconds())
		require.NoError(t, err)
	}
	old := insertAsync(t, db, m, d.ID, asyncOpts{})
	want(old, time.Minute)
	started := insertAsync(t, db, m, d.ID, asyncOpts{})
	want(started, time.Minute)
	fresh := insertAsync(t, db, m, d.ID, asyncOpts{})
	want(fresh, 0)
	queued := insertAsync(t, db, m, d.ID, asyncOpts{age: time.Minute})
	got, err := store.MarkAsyncWorkflowStarted(ctx, db, started.ID)
	require.NoError(t, err)
	require.True(t, got.WorkflowStarted)

	ids, err := store.UnstartedAsyncRequests(ctx, db, time.Now().Add(-30*time.Second), 1000)
	require.NoError(t, err)
	require.Contains(t, ids, old.ID)
	require.NotContains(t, ids, started.ID)
	require.NotContains(t, ids, fresh.ID, "whoever asked may still be starting it")
	require.NotContains(t, ids, queued.ID, "a queued request needs no workflow to be started")
	_, err = store.MarkAsyncWorkflowStarted(ctx, db, "nosuchrequest000")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// settleAttempts marks every pending attempt of earlier tests done, so that a claim here
// finds only this test's.
func settleAttempts(t *testing.T, db *sqlx.DB) {
	t.Helper()
	_, err := db.Exec(`UPDATE async_attempts SET state = 'DONE' WHERE state <> 'DONE'`)
	require.NoError(t, err)
}

// runningRequest is a claimed request of a fresh deployment.
func runningRequest(t *testing.T, db *sqlx.DB) store.AsyncRequest {
	t.Helper()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 1, 1)
	r := insertAsync(t, db, m, d.ID, asyncOpts{})
	require.True(t, claim(t, db, r.ID).Claimed)
	return r
}

func TestAsyncAttempts_CreateClaimAndFinish(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	settleAttempts(t, db)
	r := runningRequest(t, db)
	_, err := store.MarkAsyncWorkflowStarted(ctx, db, r.ID) // its workflow waits on the attempt
	require.NoError(t, err)
	announced, err := store.Listen(dbURL, store.AsyncAttemptsChannel, time.Second, time.Second, discardLogger())
	require.NoError(t, err)
	defer announced.Close()
	done, err := store.Listen(dbURL, store.AsyncDoneChannel, time.Second, time.Second, discardLogger())
	require.NoError(t, err)
	defer done.Close()

	a, err := store.CreateAsyncAttempt(ctx, db, r.ID, 1, r.DeploymentID)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptPending, a.State)
	require.Equal(t, r.ID, receive(t, announced), "a new attempt is announced to gateways")
	again, err := store.CreateAsyncAttempt(ctx, db, r.ID, 1, r.DeploymentID)
	require.NoError(t, err)
	require.Equal(t, a.CreatedAt, again.CreatedAt, "creating it again returns the same attempt")
	require.Equal(t, 1, asyncStatus(t, db, r.ID).Attempts)

	claimed, err := store.ClaimAsyncAttempts(ctx, db, "gw-1", 10)
	require.NoError(t, err)
	require.Len(t, claimed, 1)
	require.Equal(t, r.ID, claimed[0].RequestID)
	require.Equal(t, `{"x":1}`, string(claimed[0].ModelInput), "the gateway gets the model input with the attempt")
	require.Equal(t, r.ModelID, claimed[0].ModelID)
	require.NotNil(t, claimed[0].StartedAt)
	more, err := store.ClaimAsyncAttempts(ctx, db, "gw-2", 10)
	require.NoError(t, err)
	require.Empty(t, more, "a running attempt is not claimed twice")

	c, err := store.FinishAsyncAttempt(ctx, db, r.ID, 1, "gw-2", store.AttemptResult{StatusCode: 200}, 0, false)
	require.NoError(t, err)
	require.False(t, c.Recorded, "only the gateway running it may finish it")
	c, err = store.FinishAsyncAttempt(ctx, db, r.ID, 1, "gw-1", store.AttemptResult{
		StatusCode: 200, Output: []byte(`{"y":1}`), ContentType: "application/json"}, 0, false)
	require.NoError(t, err)
	require.True(t, c.Recorded)
	require.Equal(t, r.ID+"/1", receive(t, done), "a finished attempt is announced to its waiter")
	got, err := store.GetAsyncAttempt(ctx, db, r.ID, 1)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptDone, got.State)
	require.Equal(t, 200, got.StatusCode)
	require.Equal(t, `{"y":1}`, string(got.Output))
	c, err = store.FinishAsyncAttempt(ctx, db, r.ID, 1, "gw-1", store.AttemptResult{StatusCode: 500}, 0, false)
	require.NoError(t, err)
	require.False(t, c.Recorded, "a done attempt is not finished again")
}

func TestClaimAsyncAttempts_TwoGatewaysGetDifferentAttempts(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	settleAttempts(t, db)
	want := map[string]bool{}
	for range 6 {
		r := runningRequest(t, db)
		_, err := store.CreateAsyncAttempt(ctx, db, r.ID, 1, r.DeploymentID)
		require.NoError(t, err)
		want[r.ID] = true
	}
	var mu sync.Mutex
	got := map[string][]string{}
	var wg sync.WaitGroup
	for _, gw := range []string{"gw-a", "gw-b"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				cs, err := store.ClaimAsyncAttempts(ctx, db, gw, 1)
				if err != nil {
					t.Errorf("claim by %s: %v", gw, err)
					return
				}
				mu.Lock()
				for _, c := range cs {
					got[c.RequestID] = append(got[c.RequestID], gw)
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	require.Len(t, got, len(want), "every attempt is claimed by someone: %v", got)
	for id, gws := range got {
		require.True(t, want[id], "claimed an attempt of another test: %s", id)
		require.Len(t, gws, 1, "attempt of %s claimed by %v", id, gws)
	}
	none, err := store.ClaimAsyncAttempts(ctx, db, "gw-c", 0)
	require.NoError(t, err)
	require.Empty(t, none, "no free slots, no attempts")
}

func TestAbandonAsyncAttempt_OnlyWhenItsGatewayStoppedReporting(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	settleAttempts(t, db)
	live, dead := "gw-live-"+modelplane.NewID(4), "gw-dead-"+modelplane.NewID(4)
	for _, gw := range []string{live, dead} {
		require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: gw, RoutesAt: time.Now()}))
		t.Cleanup(func() { _ = store.DeleteGatewayReport(context.Background(), db, gw) })
	}
	_, err := db.ExecContext(ctx, `UPDATE gateway_reports SET reported_at = now() - interval '1 minute' WHERE gateway_id = $1`, dead)
	require.NoError(t, err)

	pending := runningRequest(t, db)
	_, err = store.CreateAsyncAttempt(ctx, db, pending.ID, 1, pending.DeploymentID)
	require.NoError(t, err)
	ok, err := store.AbandonAsyncAttempt(ctx, db, pending.ID, 1)
	require.NoError(t, err)
	require.False(t, ok, "a pending attempt waits for a gateway; nothing was lost")
	onLive := claimOn(t, db, live)
	onDead := runningRequest(t, db)
	_, err = store.CreateAsyncAttempt(ctx, db, onDead.ID, 1, onDead.DeploymentID)
	require.NoError(t, err)
	require.Equal(t, onDead.ID, claimOn(t, db, dead))

	ok, err = store.AbandonAsyncAttempt(ctx, db, onLive, 1)
	require.NoError(t, err)
	require.False(t, ok, "a reporting gateway is still running it")
	ok, err = store.AbandonAsyncAttempt(ctx, db, onDead.ID, 1)
	require.NoError(t, err)
	require.True(t, ok)
	got, err := store.GetAsyncAttempt(ctx, db, onDead.ID, 1)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptDone, got.State)
	require.Equal(t, modelplane.CodeGatewayLost, got.ErrorCode)
	require.Contains(t, got.Error, dead)
	c, err := store.FinishAsyncAttempt(ctx, db, onDead.ID, 1, dead, store.AttemptResult{StatusCode: 200}, 0, false)
	require.NoError(t, err)
	require.False(t, c.Recorded, "a gateway that comes back cannot finish an attempt given up on")

	// A gateway that shut down removed its report: its attempts are lost at once.
	require.NoError(t, store.DeleteGatewayReport(ctx, db, live))
	ok, err = store.AbandonAsyncAttempt(ctx, db, onLive, 1)
	require.NoError(t, err)
	require.True(t, ok)
}

// claimOn has the gateway claim the one pending attempt and returns its request ID.
func claimOn(t *testing.T, db *sqlx.DB, gatewayID string) string {
	t.Helper()
	cs, err := store.ClaimAsyncAttempts(context.Background(), db, gatewayID, 10)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	return cs[0].RequestID
}

func TestReleaseAsyncAttempts_GivesThemBackForAnotherGateway(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	settleAttempts(t, db)
	r := runningRequest(t, db)
	_, err := store.CreateAsyncAttempt(ctx, db, r.ID, 1, r.DeploymentID)
	require.NoError(t, err)
	cs, err := store.ClaimAsyncAttempts(ctx, db, "gw-stopping", 5)
	require.NoError(t, err)
	require.Len(t, cs, 1)
	require.NoError(t, store.ReleaseAsyncAttempts(ctx, db, "gw-stopping", cs))
	require.Equal(t, r.ID, claimOn(t, db, "gw-next"))
}

func TestStartAsyncHeads_StartsTheFirstOfEachQueueThatFitAndFailsQueuesThatWillNotServe(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	settleAttempts(t, db)
	m := newModel(t, db)
	roomy := asyncDeployment(t, db, m, 1, 3)
	var rs []string
	for i := range 5 {
		rs = append(rs, insertAsync(t, db, m, roomy.ID, asyncOpts{age: time.Duration(10-i) * time.Second}).ID)
	}
	require.True(t, claim(t, db, rs[0]).Claimed)
	cold := asyncDeployment(t, db, m, 0, 4)
	waiting := insertAsync(t, db, m, cold.ID, asyncOpts{})
	gone := asyncDeployment(t, db, m, 1, 1)
	orphan := insertAsync(t, db, m, gone.ID, asyncOpts{webhook: "https://example.com/hook"})
	require.NoError(t, store.MarkDeploymentDeleted(ctx, db, m.ID, gone.ID))

	sizes, err := store.AsyncQueueSizes(ctx, db)
	require.NoError(t, err)
	byDeployment := map[string]int{}
	for _, s := range sizes {
		byDeployment[s.DeploymentID] = s.Queued
	}
	require.Equal(t, 4, byDeployment[roomy.ID])
	require.Equal(t, 1, byDeployment[cold.ID])
	require.True(t, sort.SliceIsSorted(sizes, func(i, j int) bool { return sizes[i].DeploymentID < sizes[j].DeploymentID }))

	// Every deployment's queue, other tests' too: what is checked is this test's requests.
	s, err := store.StartAsyncHeads(ctx, db, "", 1000, "")
	require.NoError(t, err)
	require.GreaterOrEqual(t, s.Started, 2, "room for two more on roomy, none on cold")
	for i, id := range rs {
		want := modelplane.AsyncQueued
		if i < 3 {
			want = modelplane.AsyncInProgress
		}
		require.Equal(t, want, asyncStatus(t, db, id).Status, "request %d of roomy's queue", i)
	}
	att, err := store.GetAsyncAttempt(ctx, db, rs[1], 1)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptPending, att.State, "a started request's first attempt waits for a gateway")
	require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, waiting.ID).Status, "no READY replica, no room")
	failed := asyncStatus(t, db, orphan.ID)
	require.Equal(t, modelplane.AsyncFailed, failed.Status, "a deleted deployment's queue ends")
	require.Equal(t, modelplane.CodeModelUnavailable, failed.Errors[0].Code)
	require.Contains(t, s.Wanted, orphan.ID, "its webhook wants the request's workflow")
	require.Contains(t, s.Failed, orphan.ID)

	s, err = store.StartAsyncHeads(ctx, db, roomy.ID, 100, "")
	require.NoError(t, err)
	require.Zero(t, s.Started, "roomy is full now")
}

func TestStartAsyncHeads_TakesNoMoreThanTheLimitAndLeavesExpiredOnes(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 2, 4)
	late := insertAsync(t, db, m, d.ID, asyncOpts{age: time.Minute})
	_, err := db.ExecContext(ctx, `UPDATE async_requests SET expires_at = now() - interval '1 second' WHERE id = $1`, late.ID)
	require.NoError(t, err)
	for range 4 {
		insertAsync(t, db, m, d.ID, asyncOpts{})
	}
	s, err := store.StartAsyncHeads(ctx, db, d.ID, 2, "")
	require.NoError(t, err)
	require.Equal(t, 2, s.Started)
	require.Empty(t, s.Claimed, "started for any gateway: pending, claimed by none")
	s, err = store.StartAsyncHeads(ctx, db, d.ID, 1, "gw-starter")
	require.NoError(t, err)
	require.Equal(t, 1, s.Started)
	require.Len(t, s.Claimed, 1, "started by a gateway: running there")
	c := s.Claimed[0]
	require.Equal(t, 1, c.Attempt)
	require.Equal(t, `{"x":1}`, string(c.ModelInput))
	require.NotNil(t, c.StartedAt)
	att, err := store.GetAsyncAttempt(ctx, db, c.RequestID, 1)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptRunning, att.State)
	require.Equal(t, "gw-starter", att.GatewayID)
	require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, late.ID).Status, "a request past its time is not started")

	wanted, n, err := store.ExpireDueAsync(ctx, db, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Empty(t, wanted, "no webhook, no workflow wanted")
	got := asyncStatus(t, db, late.ID)
	require.Equal(t, modelplane.AsyncExpired, got.Status)
	require.Equal(t, modelplane.CodeAsyncRequestExpired, got.Errors[0].Code)
}

func TestExpireDueAsync_OneWithAWebhookWantsItsWorkflow(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 0, 1)
	r := insertAsync(t, db, m, d.ID, asyncOpts{webhook: "https://example.com/hook"})
	kept := insertAsync(t, db, m, d.ID, asyncOpts{webhook: "https://example.com/hook"})
	_, err := db.ExecContext(ctx, `UPDATE async_requests SET expires_at = now() WHERE id = $1`, r.ID)
	require.NoError(t, err)
	wanted, n, err := store.ExpireDueAsync(ctx, db, 100)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Equal(t, []string{r.ID}, wanted)
	require.NotNil(t, asyncStatus(t, db, r.ID).WorkflowWantedAt)
	require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, kept.ID).Status, "one with time left stays queued")
}

func TestInsertAsyncRequests_ABatchFillsTheWorkspaceUpToItsLimitAndRefusesTheRest(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 0, 1)
	other := newModel(t, db)
	od := asyncDeployment(t, db, other, 0, 1)
	n := store.NewAsyncRequest{WorkspaceID: m.WorkspaceID, ModelID: m.ID, DeploymentID: d.ID, Priority: 1,
		MaxTimeInQueueSeconds: 600, RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(`{"i":1}`)}
	o := n
	o.WorkspaceID, o.ModelID, o.DeploymentID = other.WorkspaceID, other.ID, od.ID
	require.NoError(t, store.SetWorkspaceQuotas(ctx, db, other.WorkspaceID, store.Quotas{Replicas: 1, GPUs: 1, AsyncRequests: 1, ArchiveBytes: 1 << 20}))

	got, err := store.InsertAsyncRequests(ctx, db, []store.NewAsyncRequest{n, o, n, o, n, n}, 3, nil)
	require.NoError(t, err)
	require.Len(t, got, 6)
	for i, want := range []bool{true, true, true, false, true, false} {
		require.Equal(t, want, got[i].ID != "", "request %d of the batch", i)
	}
	require.True(t, got[3].ByQuota, "the other workspace's quota of one refused it")
	require.Equal(t, 1, got[3].MaxOpen)
	require.Equal(t, 3, got[5].MaxOpen, "the gateway's limit of three refused it")
	require.False(t, got[5].ByQuota)
	r := asyncStatus(t, db, got[4].ID)
	require.Equal(t, modelplane.AsyncQueued, r.Status)
	require.Equal(t, `{"i":1}`, string(r.ModelInput))
	require.Equal(t, modelplane.DefaultRetryConfig(), r.RetryConfig)
	require.Equal(t, r.CreatedAt.Add(600*time.Second), r.ExpiresAt)
	require.NotEqual(t, asyncStatus(t, db, got[0].ID).WebhookDeliveryID, r.WebhookDeliveryID, "each request has its own delivery ID")
}

func TestPurgeAsyncOutputs_DropsExpiredOutputsAndOldRequests(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 4, 1)
	finished := func(age time.Duration, keepFor time.Duration) string {
		r := insertAsync(t, db, m, d.ID, asyncOpts{age: age + time.Minute})
		require.True(t, claim(t, db, r.ID).Claimed)
		_, err := store.CreateAsyncAttempt(ctx, db, r.ID, 1, d.ID)
		require.NoError(t, err)
		_, err = store.FinishAsyncRequest(ctx, db, r.ID, store.AsyncOutcome{Status: modelplane.AsyncSucceeded, Output: []byte(`1`), KeepOutput: time.Hour})
		require.NoError(t, err)
		_, err = db.ExecContext(ctx, `
			UPDATE async_requests SET finished_at = now() - $2 * interval '1 second',
			    output_expires_at = now() + $3 * interval '1 second' WHERE id = $1`, r.ID, age.Seconds(), keepFor.Seconds())
		require.NoError(t, err)
		return r.ID
	}
	week := 7 * 24 * time.Hour
	expiredOutput := finished(2*time.Hour, -time.Hour)
	keptOutput := finished(2*time.Hour, time.Hour)
	old := finished(week+time.Hour, -week)
	oldButKept := finished(week+time.Hour, time.Hour)
	oldQueued := insertAsync(t, db, m, d.ID, asyncOpts{age: 2 * week})

	now := time.Now()
	outputs, requests, err := store.PurgeAsyncOutputs(ctx, db, now, now.Add(-week))
	require.NoError(t, err)
	require.GreaterOrEqual(t, outputs, int64(2), "the expired outputs of this test")
	require.GreaterOrEqual(t, requests, int64(1))

	require.Nil(t, asyncStatus(t, db, expiredOutput).Output, "an output past its expiry is dropped")
	require.Equal(t, `1`, string(asyncStatus(t, db, keptOutput).Output))
	_, err = store.GetAsyncRequest(ctx, db, "", old)
	require.ErrorIs(t, err, store.ErrNotFound, "a request finished over a week ago is deleted")
	_, err = store.GetAsyncAttempt(ctx, db, old, 1)
	require.ErrorIs(t, err, store.ErrNotFound, "with its attempts")
	require.Equal(t, `1`, string(asyncStatus(t, db, oldButKept).Output), "an output still kept keeps its request")
	require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, oldQueued.ID).Status, "an open request is never purged")
}

// attemptOn starts a request of a fresh deployment (retry config cfg, webhook if given) and has
// gateway gw claim its first attempt.
func attemptOn(t *testing.T, db *sqlx.DB, gw string, maxAttempts int, webhook string) store.AsyncRequest {
	t.Helper()
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 1, 1)
	cfg := modelplane.DefaultRetryConfig()
	cfg.MaxAttempts = maxAttempts
	got, err := store.InsertAsyncRequests(ctx, db, []store.NewAsyncRequest{{WorkspaceID: m.WorkspaceID, ModelID: m.ID,
		DeploymentID: d.ID, WebhookEndpoint: webhook, Priority: 1, MaxTimeInQueueSeconds: 600, RetryConfig: cfg,
		ModelInput: []byte(`{}`)}}, 100, nil)
	require.NoError(t, err)
	s, err := store.StartAsyncHeads(ctx, db, d.ID, 1, "")
	require.NoError(t, err)
	require.Equal(t, 1, s.Started)
	cs, err := store.ClaimAsyncAttempts(ctx, db, gw, 1000)
	require.NoError(t, err)
	for _, c := range cs {
		if c.RequestID == got[0].ID {
			return asyncStatus(t, db, got[0].ID)
		}
	}
	t.Fatalf("gateway %s did not claim request %s's first attempt", gw, got[0].ID)
	return store.AsyncRequest{}
}

func TestFinishAsyncAttempt_ConcludesARequestWithoutAWorkflow(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	gw := "gw-" + modelplane.NewID(6)
	finish := func(r store.AsyncRequest, res store.AttemptResult) store.AttemptConclusion {
		t.Helper()
		c, err := store.FinishAsyncAttempt(ctx, db, r.ID, 1, gw, res, time.Hour, false)
		require.NoError(t, err)
		require.True(t, c.Recorded)
		return c
	}

	ok := attemptOn(t, db, gw, 3, "")
	c := finish(ok, store.AttemptResult{StatusCode: 200, Output: []byte(`{"y":2}`), ContentType: "application/json"})
	require.Equal(t, store.AttemptConclusion{Recorded: true, Ended: modelplane.AsyncSucceeded}, c)
	got := asyncStatus(t, db, ok.ID)
	require.Equal(t, modelplane.AsyncSucceeded, got.Status)
	require.Equal(t, `{"y":2}`, string(got.Output))
	require.Equal(t, "application/json", got.OutputContentType)
	require.WithinDuration(t, time.Now().Add(time.Hour), *got.OutputExpiresAt, time.Minute, "kept for the retention given")
	require.Nil(t, got.WorkflowWantedAt)

	bad := attemptOn(t, db, gw, 3, "")
	c = finish(bad, store.AttemptResult{StatusCode: 422, Output: []byte(`no`)})
	require.Equal(t, modelplane.AsyncFailed, c.Ended, "a 4xx no retry can mend ends it at once")
	require.Equal(t, modelplane.CodeModelInvalidInput, asyncStatus(t, db, bad.ID).Errors[0].Code)

	last := attemptOn(t, db, gw, 1, "")
	c = finish(last, store.AttemptResult{StatusCode: 503})
	require.Equal(t, modelplane.AsyncFailed, c.Ended, "a retryable failure of the last attempt ends it")

	retry := attemptOn(t, db, gw, 3, "")
	c = finish(retry, store.AttemptResult{StatusCode: 503})
	require.Equal(t, store.AttemptConclusion{Recorded: true, WantsWorkflow: true}, c, "a retry is the workflow's")
	got = asyncStatus(t, db, retry.ID)
	require.Equal(t, modelplane.AsyncInProgress, got.Status)
	require.NotNil(t, got.WorkflowWantedAt)

	hooked := attemptOn(t, db, gw, 3, "https://example.com/hook")
	c = finish(hooked, store.AttemptResult{StatusCode: 200})
	require.Equal(t, store.AttemptConclusion{Recorded: true, Ended: modelplane.AsyncSucceeded, WantsWorkflow: true}, c,
		"the webhook is the workflow's to deliver")
	require.Equal(t, []byte{}, asyncStatus(t, db, hooked.ID).Output, "an empty answer is kept as empty")

	owned := attemptOn(t, db, gw, 3, "")
	_, err := store.MarkAsyncWorkflowStarted(ctx, db, owned.ID)
	require.NoError(t, err)
	c = finish(owned, store.AttemptResult{StatusCode: 200})
	require.Equal(t, store.AttemptConclusion{Recorded: true}, c, "a request with a workflow is the workflow's to end")
	require.Equal(t, modelplane.AsyncInProgress, asyncStatus(t, db, owned.ID).Status)
}

func TestWantWorkflowsForLostAttempts_MarksRequestsWhoseGatewayStoppedReporting(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	live, dead := "gw-live-"+modelplane.NewID(4), "gw-dead-"+modelplane.NewID(4)
	for _, gw := range []string{live, dead} {
		require.NoError(t, store.ReportGateway(ctx, db, store.GatewayReport{GatewayID: gw, RoutesAt: time.Now()}))
		t.Cleanup(func() { _ = store.DeleteGatewayReport(context.Background(), db, gw) })
	}
	onLive := attemptOn(t, db, live, 3, "")
	onDead := attemptOn(t, db, dead, 3, "")
	_, err := db.ExecContext(ctx, `UPDATE gateway_reports SET reported_at = now() - interval '1 minute' WHERE gateway_id = $1`, dead)
	require.NoError(t, err)

	ids, err := store.WantWorkflowsForLostAttempts(ctx, db)
	require.NoError(t, err)
	require.Contains(t, ids, onDead.ID)
	require.NotContains(t, ids, onLive.ID, "a reporting gateway is still running it")
	again, err := store.WantWorkflowsForLostAttempts(ctx, db)
	require.NoError(t, err)
	require.NotContains(t, again, onDead.ID, "marked once")
	require.NotNil(t, asyncStatus(t, db, onDead.ID).WorkflowWantedAt)
}

func TestFinishAsyncAttempt_PassesTheSlotToTheNextQueuedRequest(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	gw := "gw-" + modelplane.NewID(6)
	first := attemptOn(t, db, gw, 3, "")
	next := insertAsync(t, db, store.Model{ID: first.ModelID, WorkspaceID: first.WorkspaceID}, first.DeploymentID, asyncOpts{})

	c, err := store.FinishAsyncAttempt(ctx, db, first.ID, 1, gw, store.AttemptResult{StatusCode: 200}, time.Hour, true)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, c.Ended)
	require.NotNil(t, c.Next, "the slot the first left goes to the next in the queue")
	require.Equal(t, next.ID, c.Next.RequestID)
	require.NotNil(t, c.Next.Committed, "the next attempt runs while its start commits")
	require.NoError(t, <-c.Next.Committed)
	att, err := store.GetAsyncAttempt(ctx, db, next.ID, 1)
	require.NoError(t, err)
	require.Equal(t, modelplane.AttemptRunning, att.State)
	require.Equal(t, gw, att.GatewayID)
	require.Equal(t, modelplane.AsyncInProgress, asyncStatus(t, db, next.ID).Status)

	c, err = store.FinishAsyncAttempt(ctx, db, next.ID, 1, gw, store.AttemptResult{StatusCode: 200}, time.Hour, true)
	require.NoError(t, err)
	require.Nil(t, c.Next, "an empty queue passes the slot to nobody")
}

func TestInsertAsyncRequests_WithCountsAWorkspaceFarFromItsLimitIsNotCountedAgainButOneNearItIs(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d := asyncDeployment(t, db, m, 0, 1)
	n := store.NewAsyncRequest{WorkspaceID: m.WorkspaceID, ModelID: m.ID, DeploymentID: d.ID, Priority: 1,
		MaxTimeInQueueSeconds: 600, RetryConfig: modelplane.DefaultRetryConfig(), ModelInput: []byte(`1`)}
	var counts store.OpenAsyncCounts
	got, err := store.InsertAsyncRequests(ctx, db, []store.NewAsyncRequest{n, n}, 4, &counts)
	require.NoError(t, err)
	first := got[0].ID
	// Two more recorded behind the gateway's back (another gateway, say): the trusted count
	// does not know them while the batch stays clear of the limit...
	insertAsync(t, db, m, d.ID, asyncOpts{})
	got, err = store.InsertAsyncRequests(ctx, db, []store.NewAsyncRequest{n}, 4, &counts)
	require.NoError(t, err)
	require.NotEmpty(t, got[0].ID, "three known open and one asked: within the limit of four")
	// ...and is counted again when a batch could reach it: five are open, none more fit.
	got, err = store.InsertAsyncRequests(ctx, db, []store.NewAsyncRequest{n}, 4, &counts)
	require.NoError(t, err)
	require.Empty(t, got[0].ID, "near the limit the open requests are counted: four are open")
	// A request that ended frees its place at once: near the limit, the count is taken again.
	_, canceled, err := store.CancelAsyncRequest(ctx, db, m.WorkspaceID, first)
	require.NoError(t, err)
	require.True(t, canceled)
	got, err = store.InsertAsyncRequests(ctx, db, []store.NewAsyncRequest{n}, 4, &counts)
	require.NoError(t, err)
	require.NotEmpty(t, got[0].ID)
}

func TestFinishAsyncAttempt_ADeploymentThatStoppedServingEndsItsQueueInsteadOfPassingTheSlot(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	gw := "gw-" + modelplane.NewID(6)
	first := attemptOn(t, db, gw, 3, "")
	m := store.Model{ID: first.ModelID, WorkspaceID: first.WorkspaceID}
	waiting := insertAsync(t, db, m, first.DeploymentID, asyncOpts{webhook: "https://example.com/hook"})
	_, err := db.ExecContext(ctx, `UPDATE deployments SET status = $2 WHERE id = $1`, first.DeploymentID, modelplane.DeploymentInactive)
	require.NoError(t, err)

	c, err := store.FinishAsyncAttempt(ctx, db, first.ID, 1, gw, store.AttemptResult{StatusCode: 200}, time.Hour, true)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, c.Ended, "the attempt that ran still counts")
	require.Nil(t, c.Next, "a deactivated deployment's queue is not served")
	require.Equal(t, []string{waiting.ID}, c.Wanted, "its webhook is the workflow's to deliver")
	got := asyncStatus(t, db, waiting.ID)
	require.Equal(t, modelplane.AsyncFailed, got.Status)
	require.Equal(t, modelplane.CodeModelUnavailable, got.Errors[0].Code)
}

func TestFinishAsyncAttempt_NoSlotPassesWhenTheDeploymentLostItsRoom(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	gw := "gw-" + modelplane.NewID(6)
	first := attemptOn(t, db, gw, 3, "")
	m := store.Model{ID: first.ModelID, WorkspaceID: first.WorkspaceID}
	waiting := insertAsync(t, db, m, first.DeploymentID, asyncOpts{})
	_, err := db.ExecContext(ctx, `UPDATE replicas SET state = 'DRAINING' WHERE deployment_id = $1`, first.DeploymentID)
	require.NoError(t, err)

	c, err := store.FinishAsyncAttempt(ctx, db, first.ID, 1, gw, store.AttemptResult{StatusCode: 200}, time.Hour, true)
	require.NoError(t, err)
	require.Equal(t, modelplane.AsyncSucceeded, c.Ended)
	require.Nil(t, c.Next, "no READY replica leaves no room")
	require.Equal(t, modelplane.AsyncQueued, asyncStatus(t, db, waiting.ID).Status)
}
