package workflows_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/mock"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/workflows"
	"github.com/modelplane/modelplane/workflows/contract"
)

// promoWorld is a fake of everything the Promotion workflow's activities touch: the
// environment, the deployments and their workflows.
type promoWorld struct {
	mu sync.Mutex

	begin    contract.BeginPromotionResult
	failAt   string // the activity that fails: begin, create, start, scale, wait or switch
	failWith error
	waitFor  time.Duration

	calls      []string
	created    *contract.CreateCandidateDeploymentInput
	started    *contract.StartDeploymentWorkflowInput
	updates    []contract.DeploymentUpdateInput
	waited     *contract.WaitDeploymentReadyInput
	switchedAt time.Time
	switched   string
	finished   *contract.FinishPromotionInput
	current    string // the environment's current deployment
	candidate  string // the environment's candidate deployment
	attrs      map[string]string
	envStarted time.Time
	progress   []progressRec
	// analyses counts AnalyzeStage calls; the one numbered breachAt reports a breach, those
	// in thin report too few requests.
	analyses int
	breachAt int
	thin     map[int]bool
	analyzed []contract.AnalyzeStageInput
}

// progressRec is one SetPromotionProgress call and the workflow time it happened at.
type progressRec struct {
	at      time.Duration
	status  modelplane.PromotionStatus
	percent int
}

func (w *promoWorld) record(name string) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.calls = append(w.calls, name)
	if w.failAt == name {
		if w.failWith != nil {
			return w.failWith
		}
		return temporal.NewNonRetryableApplicationError(name+" broke", "Test", nil)
	}
	return nil
}

type promoHarness struct {
	t   *testing.T
	env *testsuite.TestWorkflowEnvironment
	w   *promoWorld
}

func newPromoHarness(t *testing.T, w *promoWorld) *promoHarness {
	t.Helper()
	var s testsuite.WorkflowTestSuite
	env := s.NewTestWorkflowEnvironment()
	env.SetTestTimeout(30 * time.Second)
	w.attrs = map[string]string{}
	w.current = w.begin.PreviousDeploymentID
	var a *activities.Activities
	env.OnActivity(a.BeginPromotion, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.BeginPromotionInput) (contract.BeginPromotionResult, error) {
			if err := w.record("begin"); err != nil {
				return contract.BeginPromotionResult{}, err
			}
			return w.begin, nil
		})
	env.OnActivity(a.CreateCandidateDeployment, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.CreateCandidateDeploymentInput) (contract.CreateCandidateDeploymentResult, error) {
			if err := w.record("create"); err != nil {
				return contract.CreateCandidateDeploymentResult{}, err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.created = &in
			id := in.SourceDeploymentID
			if in.Copy {
				id = in.CandidateID
			}
			w.candidate = id
			return contract.CreateCandidateDeploymentResult{DeploymentID: id, Name: "deployment-9"}, nil
		})
	env.OnActivity(a.StartDeploymentWorkflow, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.StartDeploymentWorkflowInput) error {
			if err := w.record("start"); err != nil {
				return err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.started = &in
			return nil
		})
	env.OnActivity(a.ScaleDeployment, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.DeploymentUpdateInput) error {
			if err := w.record("scale"); err != nil {
				return err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.updates = append(w.updates, in)
			return nil
		})
	env.OnActivity(a.DeactivateDeployment, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.DeploymentUpdateInput) error {
			if err := w.record("deactivate"); err != nil {
				return err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.updates = append(w.updates, in)
			return nil
		})
	env.OnActivity(a.WaitDeploymentReady, mock.Anything, mock.Anything).After(w.waitFor).Return(
		func(_ context.Context, in contract.WaitDeploymentReadyInput) (contract.WaitDeploymentReadyResult, error) {
			if err := w.record("wait"); err != nil {
				return contract.WaitDeploymentReadyResult{}, err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.waited = &in
			return contract.WaitDeploymentReadyResult{Status: modelplane.DeploymentActive, Ready: in.Target}, nil
		})
	env.OnActivity(a.SwitchEnvironment, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.SwitchEnvironmentInput) error {
			if err := w.record("switch"); err != nil {
				return err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.switched, w.switchedAt = in.CandidateDeploymentID, env.Now()
			w.current, w.candidate = in.CandidateDeploymentID, ""
			return nil
		})
	env.OnActivity(a.FinishPromotion, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.FinishPromotionInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "finish")
			w.finished = &in
			w.candidate = ""
			return nil
		})
	env.OnActivity(a.SetPromotionProgress, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.SetPromotionProgressInput) error {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.calls = append(w.calls, "progress")
			w.progress = append(w.progress, progressRec{at: env.Now().Sub(w.envStarted), status: in.Status, percent: in.Percent})
			return nil
		})
	env.OnActivity(a.ScaleDownCandidate, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.ScaleDownCandidateInput) error {
			if err := w.record("scale"); err != nil {
				return err
			}
			w.mu.Lock()
			defer w.mu.Unlock()
			w.updates = append(w.updates, in.DeploymentUpdateInput)
			return nil
		})
	env.OnActivity(a.AnalyzeStage, mock.Anything, mock.Anything).Return(
		func(_ context.Context, in contract.AnalyzeStageInput) (contract.AnalyzeStageResult, error) {
			w.mu.Lock()
			defer w.mu.Unlock()
			w.analyses++
			w.analyzed = append(w.analyzed, in)
			out := contract.AnalyzeStageResult{Enough: !w.thin[w.analyses], Reason: "figures"}
			if w.analyses == w.breachAt {
				out.Breach, out.Reason = true, "error rate up 20.0 points"
			}
			return out, nil
		})
	env.OnUpsertTypedSearchAttributes(mock.Anything).Run(func(args mock.Arguments) {
		sa := args.Get(0).(temporal.SearchAttributes)
		w.mu.Lock()
		defer w.mu.Unlock()
		for _, k := range []temporal.SearchAttributeKeyKeyword{contract.ModelIDAttr, contract.EnvironmentAttr,
			contract.PromotionStatusAttr, contract.DeploymentIDAttr} {
			if v, ok := sa.GetKeyword(k); ok {
				w.attrs[k.GetName()] = v
			}
		}
	}).Return().Maybe()
	return &promoHarness{t: t, env: env, w: w}
}

func (h *promoHarness) run(in contract.PromotionInput) (contract.PromotionResult, error) {
	h.w.envStarted = h.env.Now()
	h.env.ExecuteWorkflow(workflows.Promotion, in)
	require.True(h.t, h.env.IsWorkflowCompleted(), "the promotion did not complete")
	err := h.env.GetWorkflowError()
	var res contract.PromotionResult
	if err == nil {
		require.NoError(h.t, h.env.GetWorkflowResult(&res))
	}
	return res, err
}

// decodeAs reads an activity argument passed as any (it arrives as JSON-decoded maps) as the
// type the receiving workflow will read it as.
func decodeAs[T any](t *testing.T, v any) T {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	var out T
	require.NoError(t, json.Unmarshal(b, &out))
	return out
}

func promoInput(source string) contract.PromotionInput {
	return contract.PromotionInput{
		PromotionID: "promo001", ModelID: "model001", WorkspaceID: "ws1", Environment: "production",
		SourceDeploymentID: source, ScaleDownPrevious: true,
	}
}

func customScaling() *settings.AutoscalingSettings {
	s := settings.DefaultAutoscalingSettings()
	s.MinReplica, s.MaxReplica, s.ConcurrencyTarget = 2, 5, 4
	return &s
}

// published is a begin result for a published source replacing deployment "prev0001"
// that has three ready replicas.
func published() contract.BeginPromotionResult {
	return contract.BeginPromotionResult{
		Settings:             settings.DefaultPromotionSettings(),
		PreviousDeploymentID: "prev0001", PreviousAutoscaling: customScaling(), PreviousReady: 3,
	}
}

func TestPromotion_FromDevelopmentCreatesNewDeploymentAndKeepsDevelopment(t *testing.T) {
	b := published()
	b.SourceIsDevelopment = true
	h := newPromoHarness(t, &promoWorld{begin: b})
	res, err := h.run(promoInput("devel001"))
	require.NoError(t, err)

	w := h.w
	require.NotNil(t, w.created)
	require.True(t, w.created.Copy, "a promotion from development must make a new deployment")
	require.Regexp(t, `^[a-z0-9]{8}$`, w.created.CandidateID)
	require.NotEqual(t, "devel001", w.created.CandidateID, "development must keep its ID")
	require.Equal(t, w.created.CandidateID, res.CandidateDeploymentID)
	require.Equal(t, w.created.CandidateID, w.switched)
	for _, u := range w.updates {
		require.NotEqual(t, contract.DeploymentWorkflowID("devel001"), u.WorkflowID, "development must not be touched")
	}
	require.Equal(t, modelplane.PromotionSucceeded, res.Status)
}

func TestPromotion_PublishedDeploymentIsReused(t *testing.T) {
	h := newPromoHarness(t, &promoWorld{begin: published()})
	res, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.False(t, h.w.created.Copy, "a published deployment must be promoted as it is")
	require.Equal(t, "pub00001", res.CandidateDeploymentID)
	require.Equal(t, "pub00001", h.w.current)
}

func TestPromotion_RedeployOnPromotionCopiesPublishedDeployment(t *testing.T) {
	b := published()
	b.Settings.RedeployOnPromotion = true
	h := newPromoHarness(t, &promoWorld{begin: b})
	res, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)
	require.True(t, h.w.created.Copy, "redeploy_on_promotion must make a copy")
	require.Equal(t, "pub00001", h.w.created.SourceDeploymentID)
	require.NotEqual(t, "pub00001", res.CandidateDeploymentID)
	require.Equal(t, res.CandidateDeploymentID, h.w.current)
}

func TestPromotion_InactiveSourceIsRefused(t *testing.T) {
	w := &promoWorld{begin: published(), failAt: "begin",
		failWith: temporal.NewNonRetryableApplicationError("deployment pub00001 is INACTIVE; activate it first",
			contract.ErrTypePromotionRefused, nil)}
	h := newPromoHarness(t, w)
	_, err := h.run(promoInput("pub00001"))
	require.ErrorContains(t, err, "activate it first")
	require.Equal(t, []string{"begin", "finish"}, w.calls, "nothing may happen after a refused begin")
	require.Equal(t, modelplane.PromotionFailed, w.finished.Status)
	require.Contains(t, w.finished.ErrorMessage, "activate it first")
	require.Equal(t, "prev0001", w.current)
}

func TestPromotion_NewDeploymentInheritsPreviousAutoscaling(t *testing.T) {
	b := published()
	b.SourceIsDevelopment = true
	h := newPromoHarness(t, &promoWorld{begin: b})
	_, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.Equal(t, *customScaling(), h.w.created.AutoscalingSettings)
	// The previous deployment keeps its ID: the demotion goes to its own workflow, which
	// carries it out once accepted; the candidate's scale-up is waited for.
	demote := h.w.updates[len(h.w.updates)-1]
	require.Equal(t, contract.DeploymentWorkflowID("prev0001"), demote.WorkflowID)
	require.True(t, demote.AcceptedOnly, "the promotion does not wait for the previous deployment to drain")
	require.False(t, h.w.updates[0].AcceptedOnly, "the candidate's scale-up is waited for")
}

func TestPromotion_NoPreviousDeploymentUsesDefaultsAndOneReplica(t *testing.T) {
	b := contract.BeginPromotionResult{Settings: settings.DefaultPromotionSettings(), SourceIsDevelopment: true}
	h := newPromoHarness(t, &promoWorld{begin: b})
	_, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.Equal(t, settings.DefaultAutoscalingSettings(), h.w.created.AutoscalingSettings)
	require.Equal(t, 1, h.w.waited.Target, "with no previous deployment the target is one replica")
	require.Len(t, h.w.updates, 1, "only the candidate is scaled when there is no previous deployment")
}

func TestPromotion_WaitsForTargetReadyBeforeSwitching(t *testing.T) {
	w := &promoWorld{begin: published(), waitFor: time.Hour}
	h := newPromoHarness(t, w)
	_, err := h.run(promoInput("pub00001"))
	require.NoError(t, err)

	require.Equal(t, []string{"begin", "create", "start", "scale", "wait", "switch", "scale"}, w.calls)
	require.Equal(t, 3, w.waited.Target, "the target must be the previous deployment's ready count")
	require.Equal(t, 3, decodeAs[contract.DeploymentInput](t, w.started.Input).Replicas)
	require.Equal(t, contract.ScaleRequest{Replicas: 3}, decodeAs[contract.ScaleRequest](t, w.updates[0].Request))
	require.Equal(t, contract.UpdateScale, w.updates[0].UpdateName)
	require.Equal(t, contract.DeploymentWorkflowID("pub00001"), w.updates[0].WorkflowID)
	require.False(t, w.switchedAt.Before(w.envStarted.Add(time.Hour)),
		"the switch came at %v, before the wait ended at %v", w.switchedAt, w.envStarted.Add(time.Hour))
}

func TestPromotion_CleanupStrategies(t *testing.T) {
	for _, tc := range []struct {
		name        string
		strategy    modelplane.CleanupStrategy
		scaleDown   bool
		wantUpdate  string // "" for none
		wantRequest any
	}{
		{"scale to zero", modelplane.CleanupScaleToZero, true, contract.UpdateScale, contract.ScaleRequest{Replicas: 0}},
		{"empty means scale to zero", "", true, contract.UpdateScale, contract.ScaleRequest{Replicas: 0}},
		{"keep", modelplane.CleanupKeep, true, "", nil},
		{"deactivate", modelplane.CleanupDeactivate, true, contract.UpdateDeactivate, nil},
		{"scale down not asked", modelplane.CleanupScaleToZero, false, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := published()
			b.Settings.PromotionCleanupStrategy = tc.strategy
			h := newPromoHarness(t, &promoWorld{begin: b})
			in := promoInput("pub00001")
			in.ScaleDownPrevious = tc.scaleDown
			_, err := h.run(in)
			require.NoError(t, err)

			var prev []contract.DeploymentUpdateInput
			for _, u := range h.w.updates {
				if u.WorkflowID == contract.DeploymentWorkflowID("prev0001") {
					prev = append(prev, u)
				}
			}
			if tc.wantUpdate == "" {
				require.Empty(t, prev, "the previous deployment must be left alone")
				return
			}
			require.Len(t, prev, 1)
			require.Equal(t, tc.wantUpdate, prev[0].UpdateName)
			if tc.wantRequest == nil {
				require.Nil(t, prev[0].Request)
			} else {
				require.Equal(t, tc.wantRequest, decodeAs[contract.ScaleRequest](t, prev[0].Request))
			}
		})
	}
}

func TestPromotion_FailureBeforeSwitchLeavesEnvironmentAndRecordsReason(t *testing.T) {
	for _, step := range []string{"begin", "create", "start", "scale", "wait", "switch"} {
		t.Run(step, func(t *testing.T) {
			w := &promoWorld{begin: published(), failAt: step}
			h := newPromoHarness(t, w)
			_, err := h.run(promoInput("pub00001"))
			require.Error(t, err, "a failed %s must fail the promotion", step)
			var appErr *temporal.ApplicationError
			require.True(t, errors.As(err, &appErr))
			require.Equal(t, contract.ErrTypePromotionFailed, appErr.Type())

			require.Equal(t, "prev0001", w.current, "the environment must stay on its previous deployment")
			require.Empty(t, w.candidate, "the candidate must be cleared")
			require.NotNil(t, w.finished, "the promotion's end must be recorded")
			require.Equal(t, modelplane.PromotionFailed, w.finished.Status)
			require.Equal(t, step+" broke", w.finished.ErrorMessage)
			require.Equal(t, "finish", w.calls[len(w.calls)-1])
			require.Equal(t, string(modelplane.PromotionFailed), w.attrs["PromotionStatus"])
			for _, u := range w.updates {
				require.NotEqual(t, contract.DeploymentWorkflowID("prev0001"), u.WorkflowID,
					"the previous deployment must not be demoted after a failure")
			}
			require.False(t, strings.Contains(strings.Join(w.calls, ","), "switch") && step != "switch")
		})
	}
}

func TestPromotion_SetsSearchAttributes(t *testing.T) {
	b := published()
	b.SourceIsDevelopment = true
	h := newPromoHarness(t, &promoWorld{begin: b})
	res, err := h.run(promoInput("devel001"))
	require.NoError(t, err)
	require.Equal(t, map[string]string{
		"ModelId": "model001", "Environment": "production",
		"PromotionStatus": string(modelplane.PromotionSucceeded), "DeploymentId": res.CandidateDeploymentID,
	}, h.w.attrs)
}

func TestPromotionWorkflowID(t *testing.T) {
	require.Equal(t, "promotion:model001:staging", contract.PromotionWorkflowID("model001", "staging"))
}
