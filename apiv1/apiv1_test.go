package apiv1_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
)

// keys returns the JSON object keys v encodes to, sorted.
func keys(t *testing.T, v any) []string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatalf("encoding %T: %v", v, err)
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(b, &obj); err != nil {
		t.Fatalf("%T does not encode to an object: %s", v, b)
	}
	out := make([]string, 0, len(obj))
	for k := range obj {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestObjects_HaveTheFieldsAPIMdLists checks the objects API.md names field by field, so a
// renamed or dropped tag is caught here rather than by a client.
func TestObjects_HaveTheFieldsAPIMdLists(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want []string
	}{
		{"ModelV1", apiv1.ModelV1{}, []string{"id", "created_at", "name", "deployments_count",
			"production_deployment_id", "development_deployment_id", "instance_type_name", "team_name"}},
		{"DeploymentV1", apiv1.DeploymentV1{}, []string{"id", "created_at", "name", "model_id", "is_production",
			"is_development", "status", "active_replica_count", "autoscaling_settings", "instance_type_name",
			"environment", "labels", "request_backpressure_settings", "region", "status_reason"}},
		{"EnvironmentV1", apiv1.EnvironmentV1{}, []string{"name", "created_at", "model_id", "current_deployment",
			"candidate_deployment", "in_progress_promotion", "autoscaling_settings", "promotion_settings",
			"request_backpressure_settings", "instance_type", "autoscaling_schedules", "shadow_settings"}},
		{"PromotionV1", apiv1.PromotionV1{}, []string{"status", "percent_traffic_to_new_version", "error_message"}},
		{"GPUV1", apiv1.GPUV1{}, []string{"uuid", "index", "name", "memory_total_bytes", "memory_used_bytes",
			"mig_mode", "healthy", "unhealthy_reason", "assigned_replica_id"}},
		{"ErrorV1", apiv1.ErrorV1{}, []string{"error"}},
		{"CreatedV1", apiv1.CreatedV1{}, []string{"model", "deployment"}},
		{"PrepareModelUploadV1", apiv1.PrepareModelUploadV1{}, []string{"creds", "s3_bucket", "s3_key", "s3_region", "upload_url"}},
		{"AWSCredentialsV1", apiv1.AWSCredentialsV1{}, []string{"aws_access_key_id", "aws_secret_access_key", "aws_session_token"}},
		{"UsageV1", apiv1.UsageV1{}, []string{"start", "end", "group_by", "rows", "totals"}},
		{"UsageRowV1", apiv1.UsageRowV1{}, apiv1.UsageCSVHeader()},
		{"UsageTotalsV1", apiv1.UsageTotalsV1{}, []string{"replica_seconds", "gpu_seconds"}},
	} {
		want := slices.Sorted(slices.Values(tc.want))
		if got := keys(t, tc.v); !slices.Equal(got, want) {
			t.Errorf("%s encodes the fields %v; API.md lists %v", tc.name, got, want)
		}
	}
}

// TestStatuses_EncodeAsPlainStrings checks that the vocabulary's types leave the JSON as it
// was when the fields were strings.
func TestStatuses_EncodeAsPlainStrings(t *testing.T) {
	b, err := json.Marshal(apiv1.EnvironmentV1{
		CurrentDeployment:   &apiv1.DeploymentV1{Status: modelplane.DeploymentScaledToZero},
		InProgressPromotion: &apiv1.PromotionV1{Status: modelplane.PromotionRampingUp},
	})
	if err != nil {
		t.Fatal(err)
	}
	var got struct {
		CurrentDeployment   struct{ Status string } `json:"current_deployment"`
		InProgressPromotion struct{ Status string } `json:"in_progress_promotion"`
	}
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	if got.CurrentDeployment.Status != "SCALED_TO_ZERO" || got.InProgressPromotion.Status != "RAMPING_UP" {
		t.Errorf("statuses encode as %q and %q, want SCALED_TO_ZERO and RAMPING_UP",
			got.CurrentDeployment.Status, got.InProgressPromotion.Status)
	}
}

// TestSpecObjects_HaveTheSpecsFields checks the bodies of routes that Baseten's spec shapes:
// the spec's fields (every required one, with modelplane's own additions named).
func TestSpecObjects_HaveTheSpecsFields(t *testing.T) {
	for _, tc := range []struct {
		name string
		v    any
		want []string
	}{
		{"InstanceTypeV1", apiv1.InstanceTypeV1{}, []string{"id", "name", "memory_limit_mib", "millicpu_limit",
			"gpu_count", "gpu_type", "gpu_memory_limit_mib"}},
		{"InstanceTypeCapacityV1", apiv1.InstanceTypeCapacityV1{}, []string{"id", "name", "memory_limit_mib",
			"millicpu_limit", "gpu_count", "gpu_type", "gpu_memory_limit_mib", "available", "total"}},
		{"UpdateEnvironmentV1", apiv1.UpdateEnvironmentV1{}, []string{"environment", "status", "message"}},
		{"EnvironmentAutoscalingSchedulesV1", apiv1.EnvironmentAutoscalingSchedulesV1{}, []string{"timezone",
			"schedules", "applied_state"}},
		{"AutoscalingScheduleStateV1", apiv1.AutoscalingScheduleStateV1{}, []string{"schedule_id", "autoscaling_settings"}},
		{"AutoscalingScheduleV1", settings.AutoscalingSchedule{}, []string{"id", "name", "enabled", "cadence", "weekdays",
			"start_hour", "start_minute", "end_hour", "end_minute", "autoscaling_settings"}},
		{"AutoscalingScheduleSettingsV1", settings.ScheduleAutoscalingSettings{}, []string{"min_replica", "max_replica",
			"autoscaling_window", "scale_down_delay", "concurrency_target", "target_utilization_percentage",
			"target_in_flight_tokens", "max_scale_down_rate"}},
		{"AutoscalingSettingsV1", settings.AutoscalingSettings{}, []string{"min_replica", "max_replica",
			"autoscaling_window", "scale_down_delay", "concurrency_target", "target_utilization_percentage",
			"target_in_flight_tokens", "max_scale_down_rate"}},
		{"PromotionSettingsV1", settings.PromotionSettings{}, []string{"redeploy_on_promotion", "rolling_deploy",
			"promotion_cleanup_strategy", "rolling_deploy_config", "ramp_up_while_promoting", "ramp_up_duration_seconds",
			"canary_analysis", "shadow_min_agreement", "shadow_min_copies"}},
		{"RollingDeployConfigV1", settings.RollingDeployConfig{}, []string{"rolling_deploy_strategy", "max_surge_percent",
			"max_unavailable_percent", "stabilization_time_seconds", "replica_overhead_percent"}},
		{"RegionV1", apiv1.RegionV1{}, []string{"slug", "display_name"}},
		{"InstanceTypesV1", apiv1.InstanceTypesV1{}, []string{"instance_types"}},
		{"APIKeyInfoV1", apiv1.APIKeyInfoV1{}, []string{"prefix", "name", "type", "model_ids", "team_name", "owner",
			"created_at", "last_used_at"}},
		{"APIKeysV1", apiv1.APIKeysV1{}, []string{"keys"}},
		{"APIKeyV1", apiv1.APIKeyV1{}, []string{"api_key"}},
		{"APIKeyTombstoneV1", apiv1.APIKeyTombstoneV1{}, []string{"prefix"}},
		{"AuditLogsV1", apiv1.AuditLogsV1{}, []string{"items", "pagination"}},
		{"PaginationV1", apiv1.PaginationV1{}, []string{"has_more", "cursor"}},
		{"AuditLogEntryV1", apiv1.AuditLogEntryV1{EventData: []byte("{}")}, []string{"id", "created", "event_type",
			"event_data", "source", "actor", "client_name", "client_version", "client_session_id"}},
		{"AuditLogActorV1", apiv1.AuditLogActorV1{}, []string{"type", "email", "api_key_prefix", "api_key_name"}},
		{"ModelMetricsV1", apiv1.ModelMetricsV1{}, []string{"start_epoch_millis", "end_epoch_millis", "mode",
			"step_seconds", "metric_descriptors", "metric_values"}},
		{"MetricDescriptorV1", apiv1.MetricDescriptorV1{}, []string{"name", "unit_hint", "kind", "label_sets"}},
		{"MetricValueSetV1", apiv1.MetricValueSetV1{}, []string{"start_epoch_millis", "values"}},
	} {
		want := slices.Sorted(slices.Values(tc.want))
		if got := keys(t, tc.v); !slices.Equal(got, want) {
			t.Errorf("%s encodes the fields %v; the spec (and API.md) list %v", tc.name, got, want)
		}
	}
}
