package apiv1_test

import (
	"encoding/json"
	"slices"
	"testing"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
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
			"production_deployment_id", "development_deployment_id", "instance_type_name"}},
		{"DeploymentV1", apiv1.DeploymentV1{}, []string{"id", "created_at", "name", "model_id", "is_production",
			"is_development", "status", "active_replica_count", "autoscaling_settings", "instance_type_name",
			"environment", "labels", "request_backpressure_settings"}},
		{"EnvironmentV1", apiv1.EnvironmentV1{}, []string{"name", "created_at", "model_id", "current_deployment",
			"candidate_deployment", "in_progress_promotion", "autoscaling_settings", "promotion_settings",
			"request_backpressure_settings"}},
		{"PromotionV1", apiv1.PromotionV1{}, []string{"status", "percent_traffic_to_new_version", "error_message"}},
		{"GPUV1", apiv1.GPUV1{}, []string{"uuid", "index", "name", "memory_total_bytes", "memory_used_bytes",
			"mig_mode", "healthy", "unhealthy_reason", "assigned_replica_id"}},
		{"ErrorV1", apiv1.ErrorV1{}, []string{"error"}},
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
