package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// TestWireTypes_ServerKnowsEveryRequestField sends each apiv1 request body with every field
// set, as the Go client would, and checks that the handler refuses none of them as unknown:
// the server reads bodies field by field, so a field added to apiv1 alone would be a 400.
func TestWireTypes_ServerKnowsEveryRequestField(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	_, err = store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true})
	require.NoError(t, err)

	i := func(v int) *int { return &v }
	b := func(v bool) *bool { return &v }
	fl := func(v float64) *float64 { return &v }
	keep := modelplane.CleanupKeep
	autoscaling := &apiv1.UpdateAutoscalingSettingsRequest{MinReplica: i(0), MaxReplica: i(2), AutoscalingWindow: i(60),
		ScaleDownDelay: i(900), ConcurrencyTarget: i(1), TargetUtilizationPercentage: i(70), MaxScaleDownRate: i(50),
		TargetInFlightTokens: i(40000)}
	replica := settings.RollingDeployReplica
	promotion := &apiv1.UpdatePromotionSettingsRequest{RedeployOnPromotion: b(false), PromotionCleanupStrategy: &keep,
		RollingDeploy: b(true), RollingDeployConfig: &apiv1.UpdateRollingDeployConfigRequest{RollingDeployStrategy: &replica,
			MaxSurgePercent: i(25), MaxUnavailablePercent: i(10), StabilizationTimeSeconds: i(300), ReplicaOverheadPercent: i(0)},
		RampUpWhilePromoting: b(true), RampUpDurationSeconds: i(600), CanaryAnalysis: &apiv1.UpdateCanaryAnalysisRequest{
			Enabled: b(true), MaxErrorRateIncrease: fl(0.01), MaxP99LatencyRatio: fl(1.5), MinRequestsPerStage: i(20)}}
	tz := "Europe/Berlin"
	schedules := &apiv1.UpdateAutoscalingScheduleSettingsRequest{Timezone: &tz, Schedules: []apiv1.AutoscalingScheduleUpsert{{
		Name: "peak", Enabled: true, Cadence: settings.CadenceDaily, Weekdays: []settings.Weekday{"MONDAY"},
		StartHour: i(8), StartMinute: 0, EndHour: i(10), EndMinute: 30,
		AutoscalingSettings: settings.ScheduleAutoscalingSettings{MinReplica: 1, MaxReplica: 4, ConcurrencyTarget: i(2)}}}}
	queue := settings.BackpressureQueueOnFull
	backpressure := &apiv1.UpdateRequestBackpressureSettingsRequest{Policy: &queue}
	base := "/v1/models/" + m.ID

	for _, tc := range []struct {
		name, method, path string
		body               any
		want               int
	}{
		{"create environment", http.MethodPost, base + "/environments",
			apiv1.CreateEnvironmentRequest{Name: "staging", AutoscalingSettings: autoscaling, PromotionSettings: promotion,
				RequestBackpressureSettings: backpressure},
			http.StatusOK},
		{"update environment", http.MethodPatch, base + "/environments/staging",
			apiv1.UpdateEnvironmentRequest{AutoscalingSettings: autoscaling, PromotionSettings: promotion,
				RequestBackpressureSettings: backpressure, AutoscalingScheduleSettings: schedules}, http.StatusOK},
		{"update request backpressure settings", http.MethodPatch, base + "/deployments/" + d.ID + "/request_backpressure_settings",
			backpressure, http.StatusOK},
		{"update autoscaling settings", http.MethodPatch, base + "/deployments/" + d.ID + "/autoscaling_settings", autoscaling, http.StatusOK},
		{"rename deployment", http.MethodPatch, base + "/deployments/" + d.ID, apiv1.RenameDeploymentRequest{Name: "renamed"}, http.StatusOK},
		{"keep awake", http.MethodPost, base + "/deployments/development/keep_awake", apiv1.KeepAwakeRequest{Seconds: 60}, http.StatusOK},
		// Without Temporal a promotion ends in 503, after its body was read.
		{"promote to production", http.MethodPost, base + "/deployments/" + d.ID + "/promote",
			apiv1.PromoteDeploymentRequest{ScaleDownPreviousProduction: true, PreserveEnvInstanceType: b(false)}, http.StatusServiceUnavailable},
		{"promote to an environment", http.MethodPost, base + "/environments/staging/promote",
			apiv1.PromoteRequest{DeploymentID: d.ID, ScaleDownPreviousDeployment: true, PreserveEnvInstanceType: b(true)},
			http.StatusServiceUnavailable},
	} {
		body, err := json.Marshal(tc.body)
		require.NoError(t, err)
		r := f.send(t, tc.method, tc.path, auth, string(body))
		require.Equal(t, tc.want, r.Status, "%s: %s answered %v", tc.name, body, r.Body)
	}
}

func TestPromote_BaseTenFieldsAreCheckedBeforeAnythingStarts(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	d, err := store.CreateDeployment(context.Background(), f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	toProduction := "/v1/models/" + m.ID + "/deployments/" + d.ID + "/promote"
	toEnvironment := "/v1/models/" + m.ID + "/environments/production/promote"
	for _, tc := range []struct {
		name, path, body string
		want             int
		text             string
	}{
		{"preserve_env_instance_type not a boolean", toProduction, `{"preserve_env_instance_type": "yes"}`, http.StatusBadRequest, "preserve_env_instance_type: must be true or false"},
		{"scale_down_previous_deployment not a boolean", toEnvironment, `{"deployment_id": "` + d.ID + `", "scale_down_previous_deployment": 1}`, http.StatusBadRequest, "scale_down_previous_deployment: must be true or false"},
		{"a field the spec does not have", toProduction, `{"preserve_instance": true}`, http.StatusBadRequest, "preserve_instance: unknown field"},
		// null leaves the default; the body is accepted and the promotion would start (503 without Temporal).
		{"nulls take the defaults", toEnvironment, `{"deployment_id": "` + d.ID + `", "scale_down_previous_deployment": null, "preserve_env_instance_type": null}`, http.StatusServiceUnavailable, "Temporal"},
		{"every spec field", toProduction, `{"scale_down_previous_production": false, "preserve_env_instance_type": false}`, http.StatusServiceUnavailable, "Temporal"},
	} {
		r := f.send(t, http.MethodPost, tc.path, auth, tc.body)
		require.Equal(t, tc.want, r.Status, "%s: %v", tc.name, r.Body)
		require.Contains(t, message(r), tc.text, tc.name)
	}
}
