package activities_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/testsuite"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

// promoFixture is a model with a development deployment and two published ones, prev
// serving production with custom autoscaling settings.
type promoFixture struct {
	db         *sqlx.DB
	acts       *activities.Activities
	env        *testsuite.TestActivityEnvironment
	model      store.Model
	dev        store.Deployment
	pub, prev  store.Deployment
	prevScales settings.AutoscalingSettings
}

func newPromoFixture(t *testing.T) *promoFixture {
	t.Helper()
	ctx := context.Background()
	db := openDB(t)
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "echo")
	require.NoError(t, err)
	archID := "sha256:" + strings.Repeat("cd", 32)
	_, _, err = store.CreateArchive(ctx, db, store.Archive{WorkspaceID: ws.ID, ID: archID, SizeBytes: 1,
		Config: json.RawMessage(`{"model_name":"echo"}`)})
	require.NoError(t, err)
	raw, timeout := "model_name: echo\n", 20
	mk := func(dev bool) store.Deployment {
		d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: ws.ID,
			IsDevelopment: dev, ArchiveID: &archID, Config: store.JSONMap{"model_name": "echo"},
			RawConfig: &raw, DeployTimeoutMinutes: &timeout,
			AutoscalingSettings: settings.DefaultAutoscalingSettings()})
		require.NoError(t, err)
		return d
	}
	f := &promoFixture{db: db, model: m, dev: mk(true), prev: mk(false), pub: mk(false)}
	f.prevScales = settings.DefaultAutoscalingSettings()
	f.prevScales.MinReplica, f.prevScales.MaxReplica = 2, 6
	require.NoError(t, store.UpdateDeploymentAutoscaling(ctx, db, m.ID, f.prev.ID, f.prevScales))
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, f.prev.ID))

	f.acts = &activities.Activities{DB: db}
	var s testsuite.WorkflowTestSuite
	f.env = s.NewTestActivityEnvironment()
	f.env.RegisterActivity(f.acts)
	return f
}

func (f *promoFixture) begin(t *testing.T, id, source string) (contract.BeginPromotionResult, error) {
	t.Helper()
	v, err := f.env.ExecuteActivity(f.acts.BeginPromotion, contract.BeginPromotionInput{
		PromotionID: id, ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID,
		Environment: modelplane.ProductionEnvironment, SourceDeploymentID: source, WorkflowID: "promotion:x",
	})
	var out contract.BeginPromotionResult
	if err == nil {
		require.NoError(t, v.Get(&out))
	}
	return out, err
}

func TestBeginPromotion_RecordsPromotionAndReportsPrevious(t *testing.T) {
	f := newPromoFixture(t)
	id := modelplane.NewID(8)
	res, err := f.begin(t, id, f.dev.ID)
	require.NoError(t, err)
	require.True(t, res.SourceIsDevelopment)
	require.Equal(t, f.prev.ID, res.PreviousDeploymentID)
	require.Equal(t, f.prevScales, *res.PreviousAutoscaling)
	require.Equal(t, 0, res.PreviousReady)

	p, err := store.PromotionByID(context.Background(), f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionReleasing, p.Status)
	require.Equal(t, f.prev.ID, *p.PreviousDeploymentID)

	again, err := f.begin(t, id, f.dev.ID)
	require.NoError(t, err, "a repeated begin must succeed")
	require.Equal(t, res, again)
}

func TestBeginPromotion_InactiveSourceIsRefused(t *testing.T) {
	f := newPromoFixture(t)
	require.NoError(t, store.SetDeploymentStatus(context.Background(), f.db, f.pub.ID, "INACTIVE", ""))
	_, err := f.begin(t, modelplane.NewID(8), f.pub.ID)
	require.ErrorContains(t, err, "activate it first")
	require.Equal(t, contract.ErrTypePromotionRefused, appErrType(err))
}

func TestBeginPromotion_SecondRunningPromotionIsRefused(t *testing.T) {
	f := newPromoFixture(t)
	_, err := f.begin(t, modelplane.NewID(8), f.pub.ID)
	require.NoError(t, err)
	_, err = f.begin(t, modelplane.NewID(8), f.dev.ID)
	require.Equal(t, contract.ErrTypePromotionRefused, appErrType(err), "got %v", err)
}

func TestPromotionActivities_CopyThenSwitch(t *testing.T) {
	f := newPromoFixture(t)
	ctx := context.Background()
	id := modelplane.NewID(8)
	_, err := f.begin(t, id, f.dev.ID)
	require.NoError(t, err)

	in := contract.CreateCandidateDeploymentInput{PromotionID: id, ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID,
		SourceDeploymentID: f.dev.ID, Copy: true, CandidateID: modelplane.NewID(8), AutoscalingSettings: f.prevScales}
	var first, second contract.CreateCandidateDeploymentResult
	v, err := f.env.ExecuteActivity(f.acts.CreateCandidateDeployment, in)
	require.NoError(t, err)
	require.NoError(t, v.Get(&first))
	v, err = f.env.ExecuteActivity(f.acts.CreateCandidateDeployment, in)
	require.NoError(t, err)
	require.NoError(t, v.Get(&second))
	require.Equal(t, first, second, "a repeated create must find the first candidate")
	require.Equal(t, in.CandidateID, first.DeploymentID)
	require.Equal(t, "deployment-3", first.Name)

	cand, err := store.DeploymentByID(ctx, f.db, f.model.ID, first.DeploymentID)
	require.NoError(t, err)
	require.Equal(t, *f.dev.ArchiveID, *cand.ArchiveID)
	require.Equal(t, f.dev.Config, cand.Config, "the copy runs the config its source's create request gave")
	require.Equal(t, *f.dev.RawConfig, *cand.RawConfig)
	require.Equal(t, 20, *cand.DeployTimeoutMinutes)
	require.Equal(t, f.prevScales, cand.AutoscalingSettings)
	require.False(t, cand.IsDevelopment)
	dev, err := store.DeploymentByID(ctx, f.db, f.model.ID, f.dev.ID)
	require.NoError(t, err)
	require.Equal(t, modelplane.DevelopmentName, dev.Name, "development must stay as it was")

	env, err := store.EnvironmentByName(ctx, f.db, f.model.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, cand.ID, *env.CandidateDeploymentID)
	require.Equal(t, f.prev.ID, *env.CurrentDeploymentID)

	sw := contract.SwitchEnvironmentInput{PromotionID: id, ModelID: f.model.ID,
		Environment: modelplane.ProductionEnvironment, CandidateDeploymentID: cand.ID}
	_, err = f.env.ExecuteActivity(f.acts.SwitchEnvironment, sw)
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.SwitchEnvironment, sw)
	require.NoError(t, err, "a repeated switch must succeed")
	env, err = store.EnvironmentByName(ctx, f.db, f.model.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, cand.ID, *env.CurrentDeploymentID)
	require.Nil(t, env.CandidateDeploymentID)
	p, err := store.PromotionByID(ctx, f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionSucceeded, p.Status)
	require.Equal(t, 100, p.PercentTrafficToNew)
	require.NotNil(t, p.FinishedAt)
}

func TestSwitchEnvironment_GivesTheCandidateThePreviousDeploymentsSettings(t *testing.T) {
	f := newPromoFixture(t)
	ctx := context.Background()
	id := modelplane.NewID(8)
	_, err := f.begin(t, id, f.pub.ID)
	require.NoError(t, err)
	v, err := f.env.ExecuteActivity(f.acts.CreateCandidateDeployment, contract.CreateCandidateDeploymentInput{
		PromotionID: id, ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID, SourceDeploymentID: f.pub.ID,
		CandidateID: f.pub.ID, AutoscalingSettings: f.prevScales})
	require.NoError(t, err)
	var cand contract.CreateCandidateDeploymentResult
	require.NoError(t, v.Get(&cand))
	require.Equal(t, f.pub.ID, cand.DeploymentID, "a published deployment is promoted as it is")
	got, err := store.DeploymentByID(ctx, f.db, f.model.ID, f.pub.ID)
	require.NoError(t, err)
	require.Equal(t, settings.DefaultAutoscalingSettings(), got.AutoscalingSettings, "it keeps its own settings until the switch")

	// A change of production's settings while the promotion runs is carried over too.
	changed := f.prevScales
	changed.ConcurrencyTarget = 3
	require.NoError(t, store.UpdateDeploymentAutoscaling(ctx, f.db, f.model.ID, f.prev.ID, changed))
	reject := settings.BackpressureRejectOnFull
	require.NoError(t, store.UpdateDeploymentBackpressure(ctx, f.db, f.model.ID, f.prev.ID, settings.RequestBackpressureSettings{Policy: &reject}))

	_, err = f.env.ExecuteActivity(f.acts.SwitchEnvironment, contract.SwitchEnvironmentInput{PromotionID: id, ModelID: f.model.ID,
		Environment: modelplane.ProductionEnvironment, CandidateDeploymentID: f.pub.ID})
	require.NoError(t, err)
	got, err = store.DeploymentByID(ctx, f.db, f.model.ID, f.pub.ID)
	require.NoError(t, err)
	require.Equal(t, changed, got.AutoscalingSettings, "the new deployment takes the previous one's settings")
	require.Equal(t, reject, got.RequestBackpressureSettings.PolicyOrNone())
}

func TestFinishPromotion_FailsAndClearsCandidateLeavingCurrent(t *testing.T) {
	f := newPromoFixture(t)
	ctx := context.Background()
	id := modelplane.NewID(8)
	_, err := f.begin(t, id, f.pub.ID)
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.CreateCandidateDeployment, contract.CreateCandidateDeploymentInput{
		PromotionID: id, ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID, SourceDeploymentID: f.pub.ID})
	require.NoError(t, err)

	_, err = f.env.ExecuteActivity(f.acts.FinishPromotion, contract.FinishPromotionInput{
		PromotionID: id, ModelID: f.model.ID, Environment: modelplane.ProductionEnvironment,
		Status: modelplane.PromotionFailed, ErrorMessage: "candidate is DEPLOY_FAILED"})
	require.NoError(t, err)
	env, err := store.EnvironmentByName(ctx, f.db, f.model.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, f.prev.ID, *env.CurrentDeploymentID)
	require.Nil(t, env.CandidateDeploymentID)
	p, err := store.PromotionByID(ctx, f.db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionFailed, p.Status)
	require.Equal(t, "candidate is DEPLOY_FAILED", p.ErrorMessage)

	// A promotion that was never recorded is nothing to finish.
	_, err = f.env.ExecuteActivity(f.acts.FinishPromotion, contract.FinishPromotionInput{
		PromotionID: modelplane.NewID(8), ModelID: f.model.ID, Environment: modelplane.ProductionEnvironment,
		Status: modelplane.PromotionFailed})
	require.NoError(t, err)
}
