package api_test

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/nvml"
	"github.com/modelplane/modelplane/placement"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// specPatchExample is the body of the spec's example PATCH of an environment, whose nulls
// must leave those fields as they are.
const specPatchExample = `{
  "autoscaling_settings": {"autoscaling_window": 800, "concurrency_target": 3, "max_replica": 2,
    "max_scale_down_rate": null, "min_replica": 1, "scale_down_delay": 60, "target_in_flight_tokens": null,
    "target_utilization_percentage": null},
  "promotion_settings": {"promotion_cleanup_strategy": null, "ramp_up_duration_seconds": 600,
    "ramp_up_while_promoting": true, "redeploy_on_promotion": true, "rolling_deploy": null, "rolling_deploy_config": null},
  "autoscaling_schedule_settings": {"schedules": [{"autoscaling_settings": {"autoscaling_window": null,
      "concurrency_target": null, "max_replica": 8, "max_scale_down_rate": null, "min_replica": 2, "scale_down_delay": null,
      "target_in_flight_tokens": null, "target_utilization_percentage": null}, "cadence": "DAILY", "enabled": true,
      "end_hour": 10, "end_minute": 0, "name": "weekday-peak", "start_hour": 8, "start_minute": 0,
      "weekdays": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]}],
    "timezone": "America/Los_Angeles"},
  "request_backpressure_settings": {"policy": "REJECT_ON_FULL"}
}`

func obj(t *testing.T, v any, key string) map[string]any {
	t.Helper()
	m, ok := v.(map[string]any)
	require.True(t, ok, "expected an object, got %v", v)
	out, ok := m[key].(map[string]any)
	require.True(t, ok, "%s is not an object in %v", key, m)
	return out
}

func TestPatchEnvironment_SpecExampleIsKeptAndAnsweredBack(t *testing.T) {
	f := newRoutesFixture(t)
	path := f.base + "/environments/production"

	r := f.send(t, http.MethodPatch, path, f.auth, specPatchExample)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"])
	require.NotEmpty(t, r.Body["message"])
	env := r.Body["environment"].(map[string]any)
	require.Equal(t, "production", env["name"], "environment is the EnvironmentV1 after the update")
	as := obj(t, env, "autoscaling_settings")
	require.EqualValues(t, 800, as["autoscaling_window"])
	require.EqualValues(t, 50, as["max_scale_down_rate"], "null leaves max_scale_down_rate as it was")
	require.EqualValues(t, 70, as["target_utilization_percentage"], "null leaves target_utilization_percentage as it was")
	require.Nil(t, as["target_in_flight_tokens"])
	ps := obj(t, env, "promotion_settings")
	require.Equal(t, "SCALE_TO_ZERO", ps["promotion_cleanup_strategy"], "null leaves the strategy as it was")
	require.Equal(t, false, ps["rolling_deploy"])
	require.Equal(t, map[string]any{"rolling_deploy_strategy": "REPLICA", "max_surge_percent": 25.0,
		"max_unavailable_percent": 0.0, "stabilization_time_seconds": 0.0, "replica_overhead_percent": 0.0},
		ps["rolling_deploy_config"], "the spec's defaults")

	// GET answers the same, the schedules included.
	got := f.do(t, http.MethodGet, path, f.auth)
	require.Equal(t, http.StatusOK, got.Status)
	require.Equal(t, env, got.Body, "PATCH answers the environment as GET does")
	sch := obj(t, got.Body, "autoscaling_schedules")
	require.Equal(t, "America/Los_Angeles", sch["timezone"])
	schedules := sch["schedules"].([]any)
	require.Len(t, schedules, 1)
	first := schedules[0].(map[string]any)
	require.NotEmpty(t, first["id"])
	require.Equal(t, "weekday-peak", first["name"])
	require.EqualValues(t, 8, obj(t, first, "autoscaling_settings")["max_replica"])
	// The spec's weekday-peak window (08:00 to 10:00 in Los Angeles) is in force or not as the
	// test runs: applied_state says which, and the settings in force with it.
	applied := obj(t, sch, "applied_state")
	if applied["schedule_id"] == nil {
		require.EqualValues(t, 2, obj(t, applied, "autoscaling_settings")["max_replica"], "the baseline is in force")
	} else {
		require.Equal(t, first["id"], applied["schedule_id"])
		require.EqualValues(t, 8, obj(t, applied, "autoscaling_settings")["max_replica"], "the schedule's is in force")
	}

	// The same body again only adds the schedule again (it has no id); a body whose every
	// field is null changes nothing and says so.
	allNull := `{"autoscaling_settings": null, "promotion_settings": null, "request_backpressure_settings": null,
		"autoscaling_schedule_settings": null}`
	r = f.send(t, http.MethodPatch, path, f.auth, allNull)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "UNCHANGED", r.Body["status"], "null for every field is a no-op")
	require.Equal(t, env, r.Body["environment"])

	// Kept fields are changed and answered back.
	r = f.send(t, http.MethodPatch, path, f.auth, `{"autoscaling_settings": {"target_in_flight_tokens": 40000},
		"promotion_settings": {"rolling_deploy": true, "rolling_deploy_config": {"max_surge_percent": 10}},
		"autoscaling_schedule_settings": {"delete_schedules": ["`+first["id"].(string)+`"]}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"])
	got = f.do(t, http.MethodGet, path, f.auth)
	require.EqualValues(t, 40000, obj(t, got.Body, "autoscaling_settings")["target_in_flight_tokens"])
	ps = obj(t, got.Body, "promotion_settings")
	require.Equal(t, true, ps["rolling_deploy"])
	require.EqualValues(t, 10, obj(t, ps, "rolling_deploy_config")["max_surge_percent"])
	require.EqualValues(t, "REPLICA", obj(t, ps, "rolling_deploy_config")["rolling_deploy_strategy"])
	sch = obj(t, got.Body, "autoscaling_schedules")
	require.Empty(t, sch["schedules"])
	require.Nil(t, sch["timezone"], "no timezone without schedules")

	// The autoscaling settings are still the served deployment's.
	d, err := store.DeploymentByID(context.Background(), f.db, f.m.ID, f.prod.ID)
	require.NoError(t, err)
	tokens, ok := d.AutoscalingSettings.TargetInFlightTokens.Get()
	require.True(t, ok)
	require.Equal(t, 40000, tokens)
	require.Equal(t, 800, d.AutoscalingSettings.AutoscalingWindow)
}

// allDaySchedule is a DAILY schedule body open all day every day (its end is its start).
func allDaySchedule(id, name string, enabled bool, minReplica, maxReplica int) string {
	idField := ""
	if id != "" {
		idField = `"id": "` + id + `", `
	}
	return fmt.Sprintf(`{%s"name": %q, "enabled": %t, "cadence": "DAILY",
		"weekdays": ["SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"],
		"start_hour": 0, "start_minute": 0, "end_hour": 0, "end_minute": 0,
		"autoscaling_settings": {"min_replica": %d, "max_replica": %d, "autoscaling_window": null,
			"scale_down_delay": 120, "concurrency_target": null, "target_utilization_percentage": null,
			"target_in_flight_tokens": null, "max_scale_down_rate": null}}`, idField, name, enabled, minReplica, maxReplica)
}

func TestEnvironments_AppliedStateNamesTheScheduleInForceAndItsSettings(t *testing.T) {
	f := newRoutesFixture(t)
	path := f.base + "/environments/production"
	r := f.send(t, http.MethodPatch, path, f.auth, `{"autoscaling_schedule_settings": {"timezone": "Europe/Paris",
		"schedules": [`+allDaySchedule("", "always", true, 1, 3)+`, `+allDaySchedule("", "off", false, 5, 5)+`]}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	env := r.Body["environment"].(map[string]any)
	sch := obj(t, env, "autoscaling_schedules")
	always := sch["schedules"].([]any)[0].(map[string]any)
	applied := obj(t, sch, "applied_state")
	require.Equal(t, always["id"], applied["schedule_id"], "the enabled schedule open now is in force; the disabled one is not")
	in := obj(t, applied, "autoscaling_settings")
	require.EqualValues(t, 1, in["min_replica"])
	require.EqualValues(t, 3, in["max_replica"])
	require.EqualValues(t, 120, in["scale_down_delay"], "the schedule's override")
	require.EqualValues(t, 70, in["target_utilization_percentage"], "the deployment's own where the schedule sets none")
	own := obj(t, env, "autoscaling_settings")
	require.EqualValues(t, 0, own["min_replica"], "the environment's autoscaling_settings stay the deployment's own")
	require.EqualValues(t, 1, own["max_replica"])
	require.Equal(t, env, f.do(t, http.MethodGet, path, f.auth).Body, "GET answers the same")

	r = f.send(t, http.MethodPatch, path, f.auth, `{"autoscaling_schedule_settings": {"schedules": [`+
		allDaySchedule(always["id"].(string), "always", false, 1, 3)+`]}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	applied = obj(t, obj(t, r.Body["environment"], "autoscaling_schedules"), "applied_state")
	require.Nil(t, applied["schedule_id"], "with every schedule disabled the deployment's own settings are in force")
	require.EqualValues(t, 1, obj(t, applied, "autoscaling_settings")["max_replica"])
}

func TestPatchEnvironment_RefusesWrongTypesAndUnknownFieldsNamingThem(t *testing.T) {
	f := newRoutesFixture(t)
	path := f.base + "/environments/production"
	before := f.do(t, http.MethodGet, path, f.auth).Body
	for _, tc := range []struct{ body, field string }{
		{`{"autoscaling_settings": {"target_in_flight_tokens": "lots"}}`, "autoscaling_settings.target_in_flight_tokens"},
		{`{"autoscaling_settings": {"min_replica": true}}`, "autoscaling_settings.min_replica"},
		{`{"autoscaling_settings": {"max_replicas": null}}`, "autoscaling_settings.max_replicas"},
		{`{"autoscaling_settings": 5}`, "autoscaling_settings"},
		{`{"promotion_settings": {"rolling_deploy": 1}}`, "promotion_settings.rolling_deploy"},
		{`{"promotion_settings": {"rolling_deploy_config": []}}`, "promotion_settings.rolling_deploy_config"},
		{`{"promotion_settings": {"rolling_deploy_config": {"rolling_deploy_strategy": "ALL_AT_ONCE"}}}`, "promotion_settings.rolling_deploy_config.rolling_deploy_strategy"},
		{`{"promotion_settings": {"rolling_deploy_config": {"max_unavailable_percent": "5"}}}`, "promotion_settings.rolling_deploy_config.max_unavailable_percent"},
		{`{"autoscaling_schedule_settings": {"timezone": "Nowhere/Special"}}`, "autoscaling_schedule_settings.timezone"},
		{`{"autoscaling_schedule_settings": {"schedules": [{"name": "x"}]}}`, "autoscaling_schedule_settings.schedules[0].enabled"},
		{`{"autoscaling_schedule_settings": {"schedules": "daily"}}`, "autoscaling_schedule_settings.schedules"},
		{`{"autoscaling_schedule_settings": {"windows": []}}`, "autoscaling_schedule_settings.windows"},
		{`{"request_backpressure_settings": {"policy": 3}}`, "request_backpressure_settings.policy"},
		{`{"instance_type": "H200:1"}`, "instance_type"},
	} {
		r := f.send(t, http.MethodPatch, path, f.auth, tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", tc.body, r.Body)
		require.Contains(t, message(r), tc.field, tc.body)
	}
	require.Equal(t, before, f.do(t, http.MethodGet, path, f.auth).Body, "refused patches change nothing")
}

func TestCreateEnvironment_AnswersTheEnvironmentAndKeepsSpecFields(t *testing.T) {
	f := newRoutesFixture(t)
	path := f.base + "/environments"
	// The spec's example body, nulls included.
	r := f.send(t, http.MethodPost, path, f.auth, `{"name": "staging", "autoscaling_settings": {"autoscaling_window": 800,
		"concurrency_target": 3, "max_replica": 2, "max_scale_down_rate": null, "min_replica": 1, "scale_down_delay": 60,
		"target_in_flight_tokens": null, "target_utilization_percentage": null},
		"promotion_settings": {"promotion_cleanup_strategy": null, "ramp_up_duration_seconds": 600,
		"ramp_up_while_promoting": true, "redeploy_on_promotion": true, "rolling_deploy": true, "rolling_deploy_config": null},
		"request_backpressure_settings": null}`)
	require.Equal(t, http.StatusOK, r.Status, "the spec answers 200: %v", r.Body)
	require.Equal(t, "staging", r.Body["name"])
	require.Nil(t, r.Body["current_deployment"])
	as := obj(t, r.Body, "autoscaling_settings")
	require.EqualValues(t, 800, as["autoscaling_window"])
	require.EqualValues(t, 50, as["max_scale_down_rate"], "null takes the default")
	ps := obj(t, r.Body, "promotion_settings")
	require.Equal(t, true, ps["rolling_deploy"])
	require.Equal(t, "SCALE_TO_ZERO", ps["promotion_cleanup_strategy"])
	require.Equal(t, map[string]any{"policy": nil}, r.Body["request_backpressure_settings"])
	it := obj(t, r.Body, "instance_type")
	require.Equal(t, "", it["id"], "an environment that serves nothing has the empty instance type")
	require.EqualValues(t, 0, it["gpu_count"])
	require.Nil(t, obj(t, r.Body, "autoscaling_schedules")["applied_state"], "no deployment, no applied state")
	require.Equal(t, r.Body, f.do(t, http.MethodGet, path+"/staging", f.auth).Body, "GET answers what create did")

	for _, tc := range []struct{ body, field string }{
		{`{"name": "qa", "promotion_settings": {"rolling_deploy": "on"}}`, "promotion_settings.rolling_deploy"},
		{`{"name": "qa", "autoscaling_settings": {"target_in_flight_tokens": 1.5}}`, "autoscaling_settings.target_in_flight_tokens"},
		{`{"name": "qa", "autoscaling_schedule_settings": {}}`, "autoscaling_schedule_settings"},
		{`{"name": null}`, "name"},
	} {
		r := f.send(t, http.MethodPost, path, f.auth, tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", tc.body, r.Body)
		require.Contains(t, message(r), tc.field)
	}
}

func TestPatchAutoscaling_KeepsTargetInFlightTokensAndNullIsUnchanged(t *testing.T) {
	f := newRoutesFixture(t)
	path := f.base + "/deployments/" + f.prod.ID + "/autoscaling_settings"
	r := f.send(t, http.MethodPatch, path, f.auth, `{"target_in_flight_tokens": 512, "max_replica": null}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"])
	r = f.send(t, http.MethodPatch, path, f.auth, `{"target_in_flight_tokens": null, "min_replica": null}`)
	require.Equal(t, "UNCHANGED", r.Body["status"], "null leaves every field as it is")
	d := f.do(t, http.MethodGet, f.base+"/deployments/"+f.prod.ID, f.auth)
	as := obj(t, d.Body, "autoscaling_settings")
	require.EqualValues(t, 512, as["target_in_flight_tokens"])
	require.EqualValues(t, 1, as["max_replica"])
	r = f.send(t, http.MethodPatch, path, f.auth, `{"target_in_flight_tokens": -3}`)
	require.Equal(t, http.StatusBadRequest, r.Status)
	require.Contains(t, message(r), "target_in_flight_tokens")
}

func TestModels_AnswerTeamName(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	ws, err := store.WorkspaceByID(context.Background(), f.db, m.WorkspaceID)
	require.NoError(t, err)
	require.NotEmpty(t, ws.Name)
	r := f.do(t, http.MethodGet, "/v1/models/"+m.ID, "Api-Key "+key)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, ws.Name, r.Body["team_name"], "team_name is the workspace's name")
	r = f.do(t, http.MethodGet, "/v1/models", "Api-Key "+key)
	require.Equal(t, ws.Name, r.Body["models"].([]any)[0].(map[string]any)["team_name"])
}

func TestDeployments_AnswerRegionNullAndBackpressureSettings(t *testing.T) {
	f := newRoutesFixture(t)
	r := f.do(t, http.MethodGet, f.base+"/deployments/"+f.prod.ID, f.auth)
	require.Equal(t, http.StatusOK, r.Status)
	region, ok := r.Body["region"]
	require.True(t, ok, "region is always in the answer")
	require.Nil(t, region, "no node reports a region")
	require.Equal(t, map[string]any{"policy": nil}, r.Body["request_backpressure_settings"])
	env := f.do(t, http.MethodGet, f.base+"/environments/production", f.auth)
	require.Equal(t, map[string]any{"policy": nil}, env.Body["request_backpressure_settings"])
}

func TestEnvironments_InstanceTypeIsWhatTheServedDeploymentRunsOn(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	nodes := nodeFixture(t)
	nodes.db = f.db

	// A CPU-only deployment runs on the CPU instance type.
	r := f.do(t, http.MethodGet, f.base+"/environments/production", f.auth)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, map[string]any{"id": "CPU", "name": "CPU", "memory_limit_mib": 0.0, "millicpu_limit": 0.0,
		"gpu_count": 0.0, "gpu_type": nil, "gpu_memory_limit_mib": nil}, r.Body["instance_type"])

	// A deployment asking for two GPUs of a type, not placed yet: the request names it.
	gpuName := "NVIDIA Z9" + modelplane.NewID(5)
	gpuType := placement.GPUType(gpuName)
	archID := "sha256:" + strings.Repeat("e1", 32)
	cfg := `{"model_name": "big", "resources": {"accelerator": "` + gpuType + `:2"}}`
	_, _, err := store.CreateArchive(ctx, f.db, store.Archive{WorkspaceID: f.m.WorkspaceID, ID: archID, SizeBytes: 1,
		Config: json.RawMessage(cfg)})
	require.NoError(t, err)
	big, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID,
		ArchiveID: &archID, AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.m.ID, modelplane.ProductionEnvironment, big.ID))
	it := obj(t, f.do(t, http.MethodGet, f.base+"/environments/production", f.auth).Body, "instance_type")
	require.Equal(t, gpuType+":2", it["id"])
	require.Equal(t, "2x "+gpuType, it["name"])
	require.Equal(t, gpuType, it["gpu_type"])
	require.Nil(t, it["gpu_memory_limit_mib"], "no replica shows the memory yet")

	// Placed on a node: the GPUs it holds say the type and memory, as /v1/instance_types does.
	node := "gpu-" + modelplane.NewID(6)
	gpu := func(i int) agentproto.GPUInfo {
		return agentproto.GPUInfo{GPU: nvml.GPU{UUID: node + "-" + string(rune('0'+i)), Index: i, Name: gpuName,
			MemoryTotalBytes: 80 << 30, Healthy: true}}
	}
	hb := agentproto.Heartbeat{Name: node, AgentID: "agent0000009", AgentURL: "http://10.9.9.9:7070",
		Inventory: agentproto.InventoryResponse{Node: node, GPUs: []agentproto.GPUInfo{gpu(0), gpu(1), gpu(2)}}}
	require.Equal(t, http.StatusOK, heartbeat(t, nodes, nodeToken, hb).Code)
	all, err := store.ListNodes(ctx, f.db)
	require.NoError(t, err)
	var nodeID string
	for _, n := range all {
		if n.Name == node {
			nodeID = n.ID
		}
	}
	require.NotEmpty(t, nodeID)
	_, _, err = store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: big.ID,
		NodeID: nodeID, GPUUUIDs: []string{node + "-0", node + "-1"}})
	require.NoError(t, err)
	it = obj(t, f.do(t, http.MethodGet, f.base+"/environments/production", f.auth).Body, "instance_type")
	require.Equal(t, gpuType+":2", it["id"])
	require.EqualValues(t, 2, it["gpu_count"])
	require.EqualValues(t, 80<<10, it["gpu_memory_limit_mib"])

	listed := instanceTypesOf(t, f.do(t, http.MethodGet, "/v1/instance_types", f.auth), gpuType)
	var ids []string
	for _, v := range listed {
		ids = append(ids, v["id"].(string))
	}
	require.Contains(t, ids, it["id"], "the environment's instance type is one GET /v1/instance_types lists")

	dep := f.do(t, http.MethodGet, f.base+"/deployments/"+big.ID, f.auth).Body
	require.Equal(t, it["id"], dep["instance_type_name"], "the deployment names the environment's instance type")
	require.Equal(t, it["id"], f.do(t, http.MethodGet, f.base, f.auth).Body["instance_type_name"],
		"the model names its production deployment's")
}

// archiveDeployment records an archive with config (JSON) and a deployment of it.
func (f *routesFixture) archiveDeployment(t *testing.T, config string) store.Deployment {
	t.Helper()
	ctx := context.Background()
	sum := sha256.Sum256([]byte(config + modelplane.NewID(8)))
	archID := "sha256:" + hex.EncodeToString(sum[:])
	_, _, err := store.CreateArchive(ctx, f.db, store.Archive{WorkspaceID: f.m.WorkspaceID, ID: archID, SizeBytes: 1,
		Config: json.RawMessage(config)})
	require.NoError(t, err)
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID,
		ArchiveID: &archID, AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	return d
}

func TestInstanceTypeName_ModelsAndDeploymentsNameWhatTheyRunOn(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	small := f.archiveDeployment(t, `{"model_name": "small", "resources": {"cpu": "0.5", "memory": "256Mi"}}`)
	gpuType := placement.GPUType("NVIDIA Z9" + modelplane.NewID(5))
	big := f.archiveDeployment(t, `{"model_name": "big", "resources": {"accelerator": "`+gpuType+`:2", "cpu": "4", "memory": "32Gi"}}`)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.m.ID, modelplane.ProductionEnvironment, small.ID))
	empty, err := store.CreateModel(ctx, f.db, f.m.WorkspaceID, "empty")
	require.NoError(t, err)

	// A CPU-only deployment's resources are its instance type's limits.
	env := f.do(t, http.MethodGet, f.base+"/environments/production", f.auth).Body
	require.Equal(t, map[string]any{"id": "CPU", "name": "CPU", "memory_limit_mib": 256.0, "millicpu_limit": 500.0,
		"gpu_count": 0.0, "gpu_type": nil, "gpu_memory_limit_mib": nil}, env["instance_type"])
	require.Equal(t, "CPU", obj(t, env, "current_deployment")["instance_type_name"])

	names := func(body map[string]any, list string) map[string]any {
		out := map[string]any{}
		for _, v := range body[list].([]any) {
			out[v.(map[string]any)["id"].(string)] = v.(map[string]any)["instance_type_name"]
		}
		return out
	}
	r := f.do(t, http.MethodGet, f.base+"/deployments", f.auth)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, map[string]any{f.prod.ID: "CPU", small.ID: "CPU", big.ID: gpuType + ":2"}, names(r.Body, "deployments"),
		"a deployment without a package asks for nothing: CPU")
	r = f.do(t, http.MethodGet, "/v1/models", f.auth)
	require.Equal(t, map[string]any{f.m.ID: "CPU", empty.ID: ""}, names(r.Body, "models"),
		"a model whose production serves nothing has none")
	require.Equal(t, "", f.do(t, http.MethodGet, "/v1/models/"+empty.ID, f.auth).Body["instance_type_name"])

	// Promoted to production, the GPU deployment's type is the model's, limits included.
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.m.ID, modelplane.ProductionEnvironment, big.ID))
	require.Equal(t, gpuType+":2", f.do(t, http.MethodGet, f.base, f.auth).Body["instance_type_name"])
	r = f.do(t, http.MethodGet, "/v1/models", f.auth)
	require.Equal(t, map[string]any{f.m.ID: gpuType + ":2", empty.ID: ""}, names(r.Body, "models"))
	it := obj(t, f.do(t, http.MethodGet, f.base+"/environments/production", f.auth).Body, "instance_type")
	require.Equal(t, gpuType+":2", it["id"])
	require.EqualValues(t, 4000, it["millicpu_limit"])
	require.EqualValues(t, 32<<10, it["memory_limit_mib"])
	r = f.do(t, http.MethodGet, f.base+"/deployments/production", f.auth)
	require.Equal(t, gpuType+":2", r.Body["instance_type_name"])
}

func TestModelAuditLogs_PageWithACursorAndKeepToTheModel(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	other, err := store.CreateModel(context.Background(), f.db, m.WorkspaceID, "other")
	require.NoError(t, err)
	for _, name := range []string{"a", "b", "c"} {
		r := f.send(t, http.MethodPost, "/v1/models/"+m.ID+"/environments", auth, `{"name": "`+name+`"}`)
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	}
	r := f.send(t, http.MethodPost, "/v1/models/"+other.ID+"/environments", auth, `{"name": "elsewhere"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)

	var names []string
	q := url.Values{"limit": {"2"}}
	for page := 0; ; page++ {
		require.Less(t, page, 5, "paging never ended")
		r := f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/audit_logs?"+q.Encode(), auth)
		require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
		for _, it := range r.Body["items"].([]any) {
			e := it.(map[string]any)
			require.Equal(t, "ENVIRONMENT_CREATED", e["event_type"])
			names = append(names, e["event_data"].(map[string]any)["environment_name"].(string))
		}
		p := r.Body["pagination"].(map[string]any)
		if p["has_more"] != true {
			require.Nil(t, p["cursor"])
			break
		}
		q.Set("cursor", p["cursor"].(string))
	}
	require.Equal(t, []string{"c", "b", "a"}, names, "newest first, each once, none of the other model's")

	for _, bad := range []string{"limit=0", "limit=201", "cursor=nonsense", "direction=SIDEWAYS"} {
		r := f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/audit_logs?"+bad, auth)
		require.Equal(t, http.StatusBadRequest, r.Status, bad)
	}
	_, _, stranger := f.workspace(t)
	require.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/audit_logs", "Api-Key "+stranger).Status)
}

func TestPromote_KeepsPreserveEnvInstanceTypeAndRefusesAWrongType(t *testing.T) {
	f := newRoutesFixture(t)
	ctx := context.Background()
	cand, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.m.ID, WorkspaceID: f.m.WorkspaceID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	for _, tc := range []struct{ path, body, field string }{
		{f.base + "/deployments/" + cand.ID + "/promote", `{"preserve_env_instance_type": "no"}`, "preserve_env_instance_type"},
		{f.base + "/environments/production/promote", `{"deployment_id": "` + cand.ID + `", "preserve_env_instance_type": 0}`, "preserve_env_instance_type"},
		{f.base + "/deployments/" + cand.ID + "/promote", `{"preserve_instance_type": true}`, "preserve_instance_type"},
	} {
		r := f.send(t, http.MethodPost, tc.path, f.auth, tc.body)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", tc.body, r.Body)
		require.Contains(t, message(r), tc.field)
	}

	r := f.send(t, http.MethodPost, f.base+"/deployments/"+cand.ID+"/promote", f.auth,
		`{"scale_down_previous_production": null, "preserve_env_instance_type": false}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	r = f.send(t, http.MethodPost, f.base+"/environments/production/promote", f.auth, `{"deployment_id": "`+cand.ID+`"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	events, err := store.ListAudit(ctx, f.db, f.m.WorkspaceID, f.m.ID, 0, 10)
	require.NoError(t, err)
	var kept []any
	for _, e := range events {
		if e.Action == "promotion.start" {
			kept = append(kept, e.Details["preserve_env_instance_type"])
		}
	}
	require.Equal(t, []any{true, false}, kept, "newest first: the default true, then the false that was sent")
}
