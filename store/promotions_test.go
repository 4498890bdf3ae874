package store_test

import (
	"context"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

func TestCreatePromotion_RoundTripsAndStartsReleasing(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)

	id := modelplane.NewID(8)
	created, err := store.CreatePromotion(ctx, db, store.NewPromotion{
		ID: id, ModelID: m.ID, Environment: modelplane.ProductionEnvironment, SourceDeploymentID: d.ID,
		Settings: settings.DefaultPromotionSettings(), WorkflowID: "promotion:" + m.ID + ":production",
	})
	require.NoError(t, err)
	got, err := store.PromotionByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, created.ID, got.ID)
	require.Equal(t, modelplane.PromotionReleasing, got.Status)
	require.Equal(t, d.ID, got.SourceDeploymentID)
	require.Nil(t, got.PreviousDeploymentID)
	require.Equal(t, settings.DefaultPromotionSettings(), got.Settings)
	require.Equal(t, "promotion:"+m.ID+":production", got.WorkflowID)
	require.Nil(t, got.FinishedAt)

	running, err := store.RunningPromotion(ctx, db, m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, id, running.ID)

	_, err = store.PromotionByID(ctx, db, modelplane.NewID(8))
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestCreatePromotion_SecondRunningOfSameEnvironmentIsConflict(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	np := store.NewPromotion{ID: modelplane.NewID(8), ModelID: m.ID, Environment: modelplane.ProductionEnvironment,
		SourceDeploymentID: d.ID, Settings: settings.DefaultPromotionSettings(), WorkflowID: "w"}
	_, err = store.CreatePromotion(ctx, db, np)
	require.NoError(t, err)

	second := np
	second.ID = modelplane.NewID(8)
	_, err = store.CreatePromotion(ctx, db, second)
	require.ErrorIs(t, err, store.ErrConflict, "a second running promotion of production must be refused")

	// Once the first has finished another may run.
	require.NoError(t, store.SetPromotionStatus(ctx, db, np.ID, modelplane.PromotionFailed, 0, "boom", true))
	_, err = store.CreatePromotion(ctx, db, second)
	require.NoError(t, err)
}

func TestSetPromotionStatus_WritesProgressAndFinish(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	id := modelplane.NewID(8)
	_, err = store.CreatePromotion(ctx, db, store.NewPromotion{ID: id, ModelID: m.ID,
		Environment: modelplane.ProductionEnvironment, SourceDeploymentID: d.ID, WorkflowID: "w"})
	require.NoError(t, err)

	require.NoError(t, store.SetPromotionStatus(ctx, db, id, modelplane.PromotionRampingUp, 30, "", false))
	p, err := store.PromotionByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionRampingUp, p.Status)
	require.Equal(t, 30, p.PercentTrafficToNew)
	require.Nil(t, p.FinishedAt, "an unfinished promotion must have no finished_at")

	require.NoError(t, store.SetPromotionStatus(ctx, db, id, modelplane.PromotionFailed, 0, "candidate crashed", true))
	p, err = store.PromotionByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, modelplane.PromotionFailed, p.Status)
	require.Equal(t, "candidate crashed", p.ErrorMessage)
	require.NotNil(t, p.FinishedAt)

	require.ErrorIs(t, store.SetPromotionStatus(ctx, db, modelplane.NewID(8), modelplane.PromotionFailed, 0, "", true), store.ErrNotFound)
	require.Error(t, store.SetPromotionStatus(ctx, db, id, "BOGUS", 0, "", true), "an unknown status must be refused")
}

func TestPromotionCandidate_SwitchAndClear(t *testing.T) {
	db, m, prev, cand, id := promotionFixture(t)
	ctx := context.Background()
	var err error

	require.NoError(t, store.SetPromotionCandidate(ctx, db, id, cand.ID))
	env, err := store.EnvironmentByName(ctx, db, m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, prev.ID, *env.CurrentDeploymentID)
	require.Equal(t, cand.ID, *env.CandidateDeploymentID)
	p, err := store.PromotionByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, cand.ID, *p.CandidateDeploymentID)

	// Clearing another deployment's candidacy changes nothing.
	require.NoError(t, store.ClearEnvironmentCandidate(ctx, db, m.ID, modelplane.ProductionEnvironment, prev.ID))
	env, err = store.EnvironmentByName(ctx, db, m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, cand.ID, *env.CandidateDeploymentID)

	require.NoError(t, store.SwitchEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, cand.ID))
	env, err = store.EnvironmentByName(ctx, db, m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, cand.ID, *env.CurrentDeploymentID)
	require.Nil(t, env.CandidateDeploymentID)

	require.ErrorIs(t, store.SwitchEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, "nosuchid"), store.ErrNotFound)
}

func TestCreateDeploymentWithID_IsIdempotent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	first, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)

	id := modelplane.NewID(8)
	as := settings.DefaultAutoscalingSettings()
	as.MaxReplica = 4
	nd := store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, Config: store.JSONMap{"model_name": "echo"},
		AutoscalingSettings: as}
	a, err := store.CreateDeploymentWithID(ctx, db, id, nd)
	require.NoError(t, err)
	b, err := store.CreateDeploymentWithID(ctx, db, id, nd)
	require.NoError(t, err)
	require.Equal(t, id, a.ID)
	require.Equal(t, a.Name, b.Name, "a repeat must return the deployment the first call made")
	require.NotEqual(t, first.Name, a.Name)
	require.False(t, a.IsDevelopment)
	require.Equal(t, as, a.AutoscalingSettings)
	require.Equal(t, "echo", a.Config["model_name"])

	next, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.Equal(t, "deployment-3", next.Name, "the repeat must not take a deployment number")
}

func TestForceCancelPromotion_EndsTheRunningPromotionAndClearsItsCandidate(t *testing.T) {
	db, m, prev, cand, id := promotionFixture(t)
	ctx := context.Background()
	var err error
	require.NoError(t, store.SetPromotionCandidate(ctx, db, id, cand.ID))
	require.NoError(t, store.SetPromotionStatus(ctx, db, id, modelplane.PromotionPaused, 40, "", false))

	p, err := store.ForceCancelPromotion(ctx, db, m.ID, modelplane.ProductionEnvironment, "force-cancelled: stuck")
	require.NoError(t, err)
	require.Equal(t, id, p.ID)
	require.Equal(t, modelplane.PromotionCanceled, p.Status)
	require.Equal(t, 0, p.PercentTrafficToNew)
	require.Equal(t, "force-cancelled: stuck", p.ErrorMessage)
	require.NotNil(t, p.FinishedAt)
	require.Equal(t, cand.ID, *p.CandidateDeploymentID, "the promotion keeps its candidate for the record")

	env, err := store.EnvironmentByName(ctx, db, m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Nil(t, env.CandidateDeploymentID)
	require.Equal(t, prev.ID, *env.CurrentDeploymentID, "the environment stays on its current deployment")
	_, err = store.RunningPromotion(ctx, db, m.ID, modelplane.ProductionEnvironment)
	require.ErrorIs(t, err, store.ErrNotFound)

	_, err = store.ForceCancelPromotion(ctx, db, m.ID, modelplane.ProductionEnvironment, "again")
	require.ErrorIs(t, err, store.ErrNotFound, "with no promotion running there is nothing to cancel")
	got, err := store.PromotionByID(ctx, db, id)
	require.NoError(t, err)
	require.Equal(t, "force-cancelled: stuck", got.ErrorMessage, "a finished promotion must not be rewritten")
}

func TestForceCancelPromotion_BeforeTheCandidateAndOnlyThatEnvironment(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	_, err = store.CreateEnvironment(ctx, db, store.Environment{ModelID: m.ID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	prodID, stagingID := modelplane.NewID(8), modelplane.NewID(8)
	for _, np := range []store.NewPromotion{
		{ID: prodID, ModelID: m.ID, Environment: modelplane.ProductionEnvironment, SourceDeploymentID: d.ID, WorkflowID: "w1"},
		{ID: stagingID, ModelID: m.ID, Environment: "staging", SourceDeploymentID: d.ID, WorkflowID: "w2"},
	} {
		_, err = store.CreatePromotion(ctx, db, np)
		require.NoError(t, err)
	}

	p, err := store.ForceCancelPromotion(ctx, db, m.ID, "staging", "gone")
	require.NoError(t, err, "a promotion still RELEASING, with no candidate yet, can be force-cancelled")
	require.Equal(t, stagingID, p.ID)
	require.Equal(t, modelplane.PromotionCanceled, p.Status)
	require.Nil(t, p.CandidateDeploymentID)

	prod, err := store.RunningPromotion(ctx, db, m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Equal(t, prodID, prod.ID, "another environment's promotion is left alone")
	require.Equal(t, modelplane.PromotionReleasing, prod.Status)

	_, err = store.ForceCancelPromotion(ctx, db, m.ID, "nosuchenv", "x")
	require.ErrorIs(t, err, store.ErrNotFound)
}

// promotionFixture is a model whose production serves prev, with a promotion id of cand
// recorded in status RELEASING.
func promotionFixture(t *testing.T) (db *sqlx.DB, m store.Model, prev, cand store.Deployment, id string) {
	t.Helper()
	db = openDB(t)
	ctx := context.Background()
	m = newModel(t, db)
	var err error
	prev, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	cand, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, prev.ID))
	id = modelplane.NewID(8)
	_, err = store.CreatePromotion(ctx, db, store.NewPromotion{ID: id, ModelID: m.ID,
		Environment: modelplane.ProductionEnvironment, SourceDeploymentID: cand.ID, PreviousDeploymentID: &prev.ID, WorkflowID: "w"})
	require.NoError(t, err)
	return db, m, prev, cand, id
}

func TestRollingDeployments_AreTheRunningRollingPromotionsDeployments(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	newDep := func() string {
		d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
		require.NoError(t, err)
		return d.ID
	}
	prev, cand := newDep(), newDep()
	rolling := settings.DefaultPromotionSettings()
	rolling.RollingDeploy = true
	id := modelplane.NewID(8)
	_, err := store.CreatePromotion(ctx, db, store.NewPromotion{
		ID: id, ModelID: m.ID, Environment: modelplane.ProductionEnvironment, SourceDeploymentID: cand,
		PreviousDeploymentID: &prev, Settings: rolling, WorkflowID: "promotion:" + m.ID + ":production",
	})
	require.NoError(t, err)

	held, err := store.RollingDeployments(ctx, db)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{prev: true}, held, "no candidate yet: only the previous deployment")

	require.NoError(t, store.SetPromotionCandidate(ctx, db, id, cand))
	held, err = store.RollingDeployments(ctx, db)
	require.NoError(t, err)
	require.Equal(t, map[string]bool{prev: true, cand: true}, held)

	require.NoError(t, store.SetPromotionStatus(ctx, db, id, modelplane.PromotionSucceeded, 100, "", true))
	held, err = store.RollingDeployments(ctx, db)
	require.NoError(t, err)
	require.Empty(t, held, "an ended promotion holds nothing")

	// A promotion in progress without rolling_deploy holds nothing either.
	_, err = store.CreatePromotion(ctx, db, store.NewPromotion{
		ID: modelplane.NewID(8), ModelID: m.ID, Environment: modelplane.ProductionEnvironment, SourceDeploymentID: cand,
		PreviousDeploymentID: &prev, Settings: settings.DefaultPromotionSettings(), WorkflowID: "promotion:" + m.ID + ":production",
	})
	require.NoError(t, err)
	held, err = store.RollingDeployments(ctx, db)
	require.NoError(t, err)
	require.Empty(t, held)
}
