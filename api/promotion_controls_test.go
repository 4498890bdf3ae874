package api_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// fakeTemporal answers Updates and terminations as a test tells it; everything else of
// client.Client is absent (nil) and panics when called.
type fakeTemporal struct {
	client.Client

	mu           sync.Mutex
	answer       contract.PromotionControlResult // the promotion's answer to a control
	updateErr    error                           // UpdateWorkflow's error for the promotion (serviceerror.NotFound: no workflow)
	refusal      error                           // the handle's error for the promotion (a validator's refusal)
	stuck        bool                            // the promotion's Updates wait until their context ends
	terminateErr error
	updates      []client.UpdateWorkflowOptions
	terminated   []string
	started      []string // IDs of the workflows started
}

func (f *fakeTemporal) UpdateWorkflow(ctx context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	f.mu.Lock()
	f.updates = append(f.updates, o)
	answer, updateErr, refusal, stuck := f.answer, f.updateErr, f.refusal, f.stuck
	f.mu.Unlock()
	if !strings.HasPrefix(o.WorkflowID, "promotion:") {
		return fakeHandle{}, nil // a Deployment workflow's update (the candidate's scale-down)
	}
	switch {
	case stuck:
		<-ctx.Done()
		return nil, client.NewWorkflowUpdateServiceTimeoutOrCanceledError(ctx.Err())
	case updateErr != nil:
		return nil, updateErr
	}
	return fakeHandle{result: answer, err: refusal}, nil
}

func (f *fakeTemporal) TerminateWorkflow(_ context.Context, workflowID, _, _ string, _ ...any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.terminated = append(f.terminated, workflowID)
	return f.terminateErr
}

func (f *fakeTemporal) set(fn func(f *fakeTemporal)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// sent returns the Updates sent so far and forgets them.
func (f *fakeTemporal) sent() []client.UpdateWorkflowOptions {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := f.updates
	f.updates = nil
	return out
}

type fakeHandle struct {
	result any
	err    error
}

func (fakeHandle) WorkflowID() string { return "wf" }
func (fakeHandle) RunID() string      { return "run" }
func (fakeHandle) UpdateID() string   { return "update" }

// Get answers the canned result through JSON, as Temporal's default data converter does.
func (h fakeHandle) Get(_ context.Context, valuePtr any) error {
	if h.err != nil || h.result == nil || valuePtr == nil {
		return h.err
	}
	b, err := json.Marshal(h.result)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, valuePtr)
}

// controlFixture serves the API with a fake Temporal (none when tc is nil) for a model
// whose environment staging serves prev and is being promoted to cand, made from src.
type controlFixture struct {
	*fixture
	tc          *fakeTemporal
	m           store.Model
	auth        string
	prev, cand  store.Deployment
	src         store.Deployment
	promotionID string
}

func newControlFixture(t *testing.T, tc *fakeTemporal) *controlFixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	deps := apitest.Deps(t, db)
	if tc != nil {
		deps.Temporal = tc
	}
	f := &controlFixture{fixture: &fixture{db: db, e: api.New(deps)}, tc: tc}
	var key string
	f.m, _, key = f.workspace(t)
	f.auth = "Api-Key " + key
	for _, d := range []*store.Deployment{&f.prev, &f.src, &f.cand} {
		*d, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID})
		require.NoError(t, err)
	}
	_, err = store.CreateEnvironment(ctx, db, store.Environment{ModelID: f.m.ID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, f.m.ID, "staging", f.prev.ID))
	f.promotionID = modelplane.NewID(8)
	_, err = store.CreatePromotion(ctx, db, store.NewPromotion{ID: f.promotionID, ModelID: f.m.ID, Environment: "staging",
		SourceDeploymentID: f.src.ID, PreviousDeploymentID: &f.prev.ID, Settings: settings.DefaultPromotionSettings(),
		WorkflowID: contract.PromotionWorkflowID(f.m.ID, "staging")})
	require.NoError(t, err)
	require.NoError(t, store.SetPromotionCandidate(ctx, db, f.promotionID, f.cand.ID))
	require.NoError(t, store.SetPromotionStatus(ctx, db, f.promotionID, modelplane.PromotionRampingUp, 30, "", false))
	return f
}

func (f *controlFixture) path(env, route string) string {
	return "/v1/models/" + f.m.ID + "/environments/" + env + "/" + route
}

func (f *controlFixture) post(t *testing.T, env, route string) response {
	t.Helper()
	return f.send(t, http.MethodPost, f.path(env, route), f.auth, "")
}

// postWithin posts with a request deadline, which bounds the wait for the workflow too.
func (f *controlFixture) postWithin(t *testing.T, d time.Duration, env, route string) response {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	req := httptest.NewRequest(http.MethodPost, f.path(env, route), nil).WithContext(ctx)
	req.Header.Set("Authorization", f.auth)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	var out map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &out), rec.Body.String())
	return response{Status: rec.Code, Body: out, Header: rec.Header()}
}

func (f *controlFixture) auditActions(t *testing.T) map[string]store.AuditEvent {
	t.Helper()
	events, err := store.ListAudit(context.Background(), f.db, f.m.WorkspaceID, f.m.ID, 0, 100)
	require.NoError(t, err)
	out := map[string]store.AuditEvent{}
	for _, e := range events {
		out[e.Action] = e
	}
	return out
}

var controlRoutes = []string{"cancel_promotion", "pause_promotion", "resume_promotion",
	"force_cancel_promotion", "force_roll_forward_promotion"}

func TestPromotionControls_AnswerAsAPIDocSays(t *testing.T) {
	tc := &fakeTemporal{}
	f := newControlFixture(t, tc)
	wfID := contract.PromotionWorkflowID(f.m.ID, "staging")

	tests := []struct {
		route, update, action string
		answer                contract.PromotionControlResult
		want                  map[string]any
	}{
		{"cancel_promotion", "cancel", "promotion.cancel",
			contract.PromotionControlResult{Success: true, Status: "RAMPING_DOWN", Percent: 30, Message: "ramping down from 30%"},
			map[string]any{"status": "RAMPING_DOWN", "message": "ramping down from 30%"}},
		{"pause_promotion", "pause", "promotion.pause",
			contract.PromotionControlResult{Success: true, Status: "PAUSED", Percent: 30, Message: "paused at 30%"},
			map[string]any{"success": true, "message": "paused at 30%"}},
		{"resume_promotion", "resume", "promotion.resume",
			contract.PromotionControlResult{Success: true, Status: "RAMPING_UP", Percent: 30},
			map[string]any{"success": true}},
		{"force_roll_forward_promotion", "force_roll_forward", "promotion.force_roll_forward",
			contract.PromotionControlResult{Success: true, Status: "RAMPING_UP", Percent: 100, Message: "all traffic goes to the candidate"},
			map[string]any{"success": true, "message": "all traffic goes to the candidate"}},
		{"force_cancel_promotion", "force_cancel", "promotion.force_cancel",
			contract.PromotionControlResult{Success: true, Status: "CANCELED", Message: "traffic goes back to the current deployment"},
			map[string]any{"success": true, "message": "traffic goes back to the current deployment"}},
	}
	for _, tt := range tests {
		t.Run(tt.route, func(t *testing.T) {
			tc.set(func(f *fakeTemporal) { f.answer = tt.answer })
			r := f.post(t, "staging", tt.route)
			require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
			require.Equal(t, tt.want, r.Body)

			sent := tc.sent()
			require.Len(t, sent, 1)
			require.Equal(t, wfID, sent[0].WorkflowID)
			require.Equal(t, tt.update, sent[0].UpdateName)
			require.Equal(t, client.WorkflowUpdateStageCompleted, sent[0].WaitForStage, "the workflow answers at once")

			ev, ok := f.auditActions(t)[tt.action]
			require.True(t, ok, "a control the workflow took is audited as %s", tt.action)
			require.Equal(t, "staging", ev.Target)
			require.Equal(t, f.promotionID, ev.Details["promotion_id"])
		})
	}
	require.Empty(t, tc.terminated, "a workflow that answers is not terminated")

	// A control the workflow answers but does not take: success false, nothing audited.
	tc.set(func(f *fakeTemporal) {
		f.answer = contract.PromotionControlResult{Success: false, Status: "PAUSED", Percent: 30, Message: "already paused"}
	})
	before := len(f.auditActions(t))
	r := f.post(t, "staging", "pause_promotion")
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, map[string]any{"success": false, "message": "already paused"}, r.Body)
	require.Len(t, f.auditActions(t), before)
}

func TestPromotionControls_NoRunningPromotionIs409(t *testing.T) {
	tc := &fakeTemporal{}
	f := newControlFixture(t, tc)
	for _, route := range controlRoutes {
		r := f.post(t, modelplane.ProductionEnvironment, route)
		require.Equal(t, http.StatusConflict, r.Status, "%s: %v", route, r.Body)
		code, msg := errorCode(t, r)
		require.Equal(t, "conflict", code)
		require.Contains(t, msg, "production", "the message names the environment")
	}
	require.Empty(t, tc.sent(), "without a running promotion nothing is sent")

	// The database shows the promotion running but its workflow is gone: 409 too (only
	// force_cancel ends such a promotion).
	tc.set(func(f *fakeTemporal) { f.updateErr = serviceerror.NewNotFound("workflow execution already completed") })
	for _, route := range []string{"cancel_promotion", "pause_promotion", "resume_promotion", "force_roll_forward_promotion"} {
		r := f.post(t, "staging", route)
		require.Equal(t, http.StatusConflict, r.Status, "%s: %v", route, r.Body)
		require.Contains(t, message(r), "staging")
		require.Contains(t, message(r), "force_cancel_promotion")
	}
	require.Empty(t, tc.terminated)
	p, err := store.PromotionByID(context.Background(), f.db, f.promotionID)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionRampingUp, p.Status, "only force_cancel ends a promotion by itself")
}

func TestPromotionControls_ValidatorRefusalIs409WithItsReason(t *testing.T) {
	tc := &fakeTemporal{}
	f := newControlFixture(t, tc)
	const reason = "the promotion is not ramping: nothing to pause"
	tc.set(func(f *fakeTemporal) { f.refusal = temporal.NewApplicationError(reason, "InvalidControl") })
	for _, route := range controlRoutes {
		r := f.post(t, "staging", route)
		require.Equal(t, http.StatusConflict, r.Status, "%s: %v", route, r.Body)
		require.Equal(t, reason, message(r))
	}
	require.Empty(t, tc.terminated, "a refused force_cancel does not terminate a live workflow")
	for action := range f.auditActions(t) {
		require.NotContains(t, action, "promotion.", "a refused control is not audited")
	}
}

func TestPromotionControls_UnknownEnvironmentAndForeignModelAre404(t *testing.T) {
	tc := &fakeTemporal{}
	f := newControlFixture(t, tc)
	_, _, otherKey := f.workspace(t)
	for _, route := range controlRoutes {
		r := f.post(t, "nosuchenv", route)
		require.Equal(t, http.StatusNotFound, r.Status, "%s: %v", route, r.Body)
		require.Contains(t, message(r), "nosuchenv")

		r = f.send(t, http.MethodPost, f.path("staging", route), "Api-Key "+otherKey, "")
		require.Equal(t, http.StatusNotFound, r.Status, "another workspace's model: %s: %v", route, r.Body)
	}
	require.Empty(t, tc.sent())
}

func TestPromotionControls_WithoutTemporalAre503(t *testing.T) {
	f := newControlFixture(t, nil)
	for _, route := range controlRoutes {
		r := f.post(t, "staging", route)
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s: %v", route, r.Body)
	}
}

func TestPromotionControls_UnansweredControlIs503(t *testing.T) {
	tc := &fakeTemporal{stuck: true}
	f := newControlFixture(t, tc)
	r := f.postWithin(t, time.Second, "staging", "cancel_promotion")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "force_cancel_promotion")
	require.Empty(t, tc.terminated, "only force_cancel terminates")
}

func TestForceCancelPromotion_EndsAStuckPromotionItself(t *testing.T) {
	tc := &fakeTemporal{stuck: true}
	f := newControlFixture(t, tc)
	ctx := context.Background()

	r := f.postWithin(t, time.Second, "staging", "force_cancel_promotion")
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, true, r.Body["success"])
	require.Contains(t, r.Body["message"], "promotion force-cancelled; ")
	require.Contains(t, r.Body["message"], "scaled to zero")

	require.Equal(t, []string{contract.PromotionWorkflowID(f.m.ID, "staging")}, tc.terminated)
	p, err := store.PromotionByID(ctx, f.db, f.promotionID)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionCanceled, p.Status)
	require.Equal(t, 0, p.PercentTrafficToNew)
	require.NotNil(t, p.FinishedAt)
	require.Contains(t, p.ErrorMessage, "force-cancelled")
	env, err := store.EnvironmentByName(ctx, f.db, f.m.ID, "staging")
	require.NoError(t, err)
	require.Nil(t, env.CandidateDeploymentID, "the candidate is cleared")
	require.Equal(t, f.prev.ID, *env.CurrentDeploymentID)

	var scaled bool
	for _, u := range tc.sent() {
		if u.WorkflowID == contract.DeploymentWorkflowID(f.cand.ID) {
			require.Equal(t, contract.UpdateScale, u.UpdateName)
			require.Equal(t, []any{contract.ScaleRequest{Replicas: 0}}, u.Args)
			scaled = true
		}
	}
	require.True(t, scaled, "the candidate is scaled to zero")

	ev, ok := f.auditActions(t)["promotion.force_cancel"]
	require.True(t, ok)
	require.Equal(t, true, ev.Details["forced"])
	require.Equal(t, "staging", ev.Target)

	// Done: nothing runs any more.
	r = f.post(t, "staging", "force_cancel_promotion")
	require.Equal(t, http.StatusConflict, r.Status)
}

func TestForceCancelPromotion_WorkflowGoneButPromotionShownRunning(t *testing.T) {
	tc := &fakeTemporal{
		updateErr:    serviceerror.NewNotFound("workflow not found"),
		terminateErr: serviceerror.NewNotFound("workflow not found"),
	}
	f := newControlFixture(t, tc)
	ctx := context.Background()
	// The promoted deployment itself is the candidate (no redeploy), and it serves production:
	// it is kept.
	require.NoError(t, store.SetPromotionCandidate(ctx, f.db, f.promotionID, f.src.ID))
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.m.ID, modelplane.ProductionEnvironment, f.src.ID))

	r := f.post(t, "staging", "force_cancel_promotion")
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, true, r.Body["success"])
	require.Contains(t, r.Body["message"], "promotion force-cancelled; its workflow is no longer running")
	require.Contains(t, r.Body["message"], "kept")

	p, err := store.PromotionByID(ctx, f.db, f.promotionID)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionCanceled, p.Status)
	env, err := store.EnvironmentByName(ctx, f.db, f.m.ID, "staging")
	require.NoError(t, err)
	require.Nil(t, env.CandidateDeploymentID)
	for _, u := range tc.sent() {
		require.NotEqual(t, contract.DeploymentWorkflowID(f.src.ID), u.WorkflowID, "a candidate serving another environment is not scaled down")
	}
}

func TestForceCancelPromotion_TerminateFailingChangesNothing(t *testing.T) {
	tc := &fakeTemporal{stuck: true, terminateErr: errors.New("connection refused")}
	f := newControlFixture(t, tc)
	r := f.postWithin(t, time.Second, "staging", "force_cancel_promotion")
	require.Equal(t, http.StatusServiceUnavailable, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "nothing was changed")
	p, err := store.PromotionByID(context.Background(), f.db, f.promotionID)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionRampingUp, p.Status)
	require.Equal(t, 30, p.PercentTrafficToNew)
}
