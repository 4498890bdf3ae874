package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

func TestDeployments_ListAndGetWithAliases(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	ctx := context.Background()
	dev, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true})
	require.NoError(t, err)
	prod, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, m.ID, modelplane.ProductionEnvironment, prod.ID))
	_, err = f.db.Exec(`INSERT INTO replicas (id, deployment_id, state) VALUES ($1, $2, 'READY'), ($3, $2, 'STARTING')`,
		modelplane.NewID(12), prod.ID, modelplane.NewID(12))
	require.NoError(t, err)

	auth := "Api-Key " + key
	r := f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments", auth)
	require.Equal(t, http.StatusOK, r.Status)
	require.Len(t, r.Body["deployments"].([]any), 2)

	got := f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments/production", auth)
	require.Equal(t, http.StatusOK, got.Status, "%v", got.Body)
	require.Equal(t, prod.ID, got.Body["id"])
	require.Equal(t, "deployment-1", got.Body["name"])
	require.Equal(t, true, got.Body["is_production"])
	require.Equal(t, "production", got.Body["environment"])
	require.EqualValues(t, 1, got.Body["active_replica_count"], "only READY replicas count")
	require.Equal(t, "BUILDING", got.Body["status"])

	got = f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments/development", auth)
	require.Equal(t, http.StatusOK, got.Status)
	require.Equal(t, dev.ID, got.Body["id"])
	require.Equal(t, true, got.Body["is_development"])
	require.Nil(t, got.Body["environment"])

	got = f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments/"+dev.ID, auth)
	require.Equal(t, http.StatusOK, got.Status)

	// A deleted deployment is gone from lists and lookups.
	require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, m.ID, dev.ID))
	require.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments/"+dev.ID, auth).Status)
	require.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments/development", auth).Status)
	r = f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments", auth)
	require.Len(t, r.Body["deployments"].([]any), 1)
}

func TestDeployments_UnknownAndForeignAre404(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	_, _, otherKey := f.workspace(t)
	for _, tt := range []struct{ path, auth string }{
		{"/v1/models/" + m.ID + "/deployments/zzzzzzzz", "Api-Key " + key},
		{"/v1/models/" + m.ID + "/deployments/production", "Api-Key " + key}, // production points nowhere yet
		{"/v1/models/zzzzzzzz/deployments", "Api-Key " + key},
		{"/v1/models/" + m.ID + "/deployments", "Api-Key " + otherKey},
		{"/v1/models/" + m.ID + "/environments", "Api-Key " + otherKey},
		{"/v1/models/" + m.ID + "/environments/staging", "Api-Key " + key},
	} {
		r := f.do(t, http.MethodGet, tt.path, tt.auth)
		require.Equal(t, http.StatusNotFound, r.Status, tt.path)
		code, _ := errorCode(t, r)
		require.Equal(t, "not_found", code)
	}
}

func TestEnvironments_ShowDeploymentsAndPromotionInFlight(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	ctx := context.Background()
	served := settings.DefaultAutoscalingSettings()
	served.MaxReplica = 4
	prev, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, AutoscalingSettings: served})
	require.NoError(t, err)
	cand, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	_, err = store.CreateEnvironment(ctx, f.db, store.Environment{ModelID: m.ID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, m.ID, "staging", prev.ID))
	_, err = f.db.Exec(`UPDATE environments SET candidate_deployment_id = $1 WHERE model_id = $2 AND name = 'staging'`, cand.ID, m.ID)
	require.NoError(t, err)
	_, err = f.db.Exec(`INSERT INTO promotions (id, model_id, environment, source_deployment_id, candidate_deployment_id,
		previous_deployment_id, status, percent_traffic_to_new_version, workflow_id)
		VALUES ($1, $2, 'staging', $3, $3, $4, 'RAMPING_UP', 30, 'promotion:x:staging')`, modelplane.NewID(8), m.ID, cand.ID, prev.ID)
	require.NoError(t, err)

	auth := "Api-Key " + key
	r := f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/environments", auth)
	require.Equal(t, http.StatusOK, r.Status)
	envs := r.Body["environments"].([]any)
	require.Len(t, envs, 2)
	require.Equal(t, "production", envs[0].(map[string]any)["name"], "production is listed first")
	require.Nil(t, envs[0].(map[string]any)["current_deployment"])

	got := f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/environments/staging", auth)
	require.Equal(t, http.StatusOK, got.Status)
	require.Equal(t, prev.ID, got.Body["current_deployment"].(map[string]any)["id"])
	require.Equal(t, cand.ID, got.Body["candidate_deployment"].(map[string]any)["id"])
	promo := got.Body["in_progress_promotion"].(map[string]any)
	require.Equal(t, "RAMPING_UP", promo["status"])
	require.EqualValues(t, 30, promo["percent_traffic_to_new_version"])
	require.EqualValues(t, 600, got.Body["promotion_settings"].(map[string]any)["ramp_up_duration_seconds"])
	require.EqualValues(t, 4, got.Body["autoscaling_settings"].(map[string]any)["max_replica"],
		"an environment shows the settings of the deployment it serves")
	require.Equal(t, map[string]any{"policy": nil}, got.Body["request_backpressure_settings"])
}
