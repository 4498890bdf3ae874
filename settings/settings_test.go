package settings

import (
	"encoding/json"
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// requireFieldError checks that err is a *FieldError for field whose message contains want.
func requireFieldError(t *testing.T, err error, field, want string) {
	t.Helper()
	require.Error(t, err, "expected a FieldError for %s", field)
	var fe *FieldError
	require.True(t, errors.As(err, &fe), "expected *FieldError, got %T: %v", err, err)
	assert.Equal(t, field, fe.Field, "error %q names the wrong field", err)
	assert.Contains(t, fe.Message, want, "error %q", err)
	assert.ErrorIs(t, err, ErrInvalid)
}

func TestValidateAutoscaling_DefaultsAreValid(t *testing.T) {
	require.NoError(t, ValidateAutoscaling("autoscaling_settings", DefaultAutoscalingSettings()))
}

func TestValidateAutoscaling_RangeEdges(t *testing.T) {
	type mod func(*AutoscalingSettings)
	tests := []struct {
		name    string
		mod     mod
		field   string // empty: valid
		message string
	}{
		{"min_replica 0 is the floor", func(s *AutoscalingSettings) { s.MinReplica = 0 }, "", ""},
		{"min_replica -1 is refused", func(s *AutoscalingSettings) { s.MinReplica = -1 }, "min_replica", "must be >= 0, got -1"},
		{"max_replica 1 is the floor", func(s *AutoscalingSettings) { s.MaxReplica = 1 }, "", ""},
		{"max_replica 0 is refused", func(s *AutoscalingSettings) { s.MaxReplica = 0 }, "max_replica", "must be >= 1 and >= min_replica (0), got 0"},
		{"max_replica equal to min_replica is fine", func(s *AutoscalingSettings) { s.MinReplica, s.MaxReplica = 3, 3 }, "", ""},
		{"max_replica below min_replica is refused", func(s *AutoscalingSettings) { s.MinReplica, s.MaxReplica = 3, 2 }, "max_replica", "must be >= 1 and >= min_replica (3), got 2"},
		{"large max_replica is fine", func(s *AutoscalingSettings) { s.MaxReplica = 1000 }, "", ""},
		{"autoscaling_window 10 is the floor", func(s *AutoscalingSettings) { s.AutoscalingWindow = 10 }, "", ""},
		{"autoscaling_window 9 is refused", func(s *AutoscalingSettings) { s.AutoscalingWindow = 9 }, "autoscaling_window", "between 10 and 3600 seconds, got 9"},
		{"autoscaling_window 3600 is the ceiling", func(s *AutoscalingSettings) { s.AutoscalingWindow = 3600 }, "", ""},
		{"autoscaling_window 3601 is refused", func(s *AutoscalingSettings) { s.AutoscalingWindow = 3601 }, "autoscaling_window", "got 3601"},
		{"scale_down_delay 0 is the floor", func(s *AutoscalingSettings) { s.ScaleDownDelay = 0 }, "", ""},
		{"scale_down_delay -1 is refused", func(s *AutoscalingSettings) { s.ScaleDownDelay = -1 }, "scale_down_delay", "between 0 and 3600 seconds, got -1"},
		{"scale_down_delay 3600 is the ceiling", func(s *AutoscalingSettings) { s.ScaleDownDelay = 3600 }, "", ""},
		{"scale_down_delay 3601 is refused", func(s *AutoscalingSettings) { s.ScaleDownDelay = 3601 }, "scale_down_delay", "got 3601"},
		{"concurrency_target 1 is the floor", func(s *AutoscalingSettings) { s.ConcurrencyTarget = 1 }, "", ""},
		{"concurrency_target 0 is refused", func(s *AutoscalingSettings) { s.ConcurrencyTarget = 0 }, "concurrency_target", "between 1 and 10000"},
		{"concurrency_target 10000 is the ceiling", func(s *AutoscalingSettings) { s.ConcurrencyTarget = 10000 }, "", ""},
		{"concurrency_target 10001 is refused", func(s *AutoscalingSettings) { s.ConcurrencyTarget = 10001 }, "concurrency_target", "got 10001"},
		{"target_utilization_percentage 1 is the floor", func(s *AutoscalingSettings) { s.TargetUtilizationPercentage = 1 }, "", ""},
		{"target_utilization_percentage 0 is refused", func(s *AutoscalingSettings) { s.TargetUtilizationPercentage = 0 }, "target_utilization_percentage", "between 1 and 100 percent, got 0"},
		{"target_utilization_percentage 100 is the ceiling", func(s *AutoscalingSettings) { s.TargetUtilizationPercentage = 100 }, "", ""},
		{"target_utilization_percentage 101 is refused", func(s *AutoscalingSettings) { s.TargetUtilizationPercentage = 101 }, "target_utilization_percentage", "got 101"},
		{"max_scale_down_rate 1 is the floor", func(s *AutoscalingSettings) { s.MaxScaleDownRate = 1 }, "", ""},
		{"max_scale_down_rate 0 is refused", func(s *AutoscalingSettings) { s.MaxScaleDownRate = 0 }, "max_scale_down_rate", "between 1 and 50 percent of replicas per step, got 0"},
		{"max_scale_down_rate 50 is the ceiling", func(s *AutoscalingSettings) { s.MaxScaleDownRate = 50 }, "", ""},
		{"max_scale_down_rate 51 is refused", func(s *AutoscalingSettings) { s.MaxScaleDownRate = 51 }, "max_scale_down_rate", "got 51"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultAutoscalingSettings()
			tt.mod(&s)
			err := ValidateAutoscaling("autoscaling_settings", s)
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			requireFieldError(t, err, "autoscaling_settings."+tt.field, tt.message)
		})
	}
}

func TestValidateAutoscaling_ErrorTextNamesFieldAndRule(t *testing.T) {
	s := DefaultAutoscalingSettings()
	s.MaxReplica = 0
	err := ValidateAutoscaling("autoscaling_settings", s)
	assert.EqualError(t, err, "autoscaling_settings.max_replica: must be >= 1 and >= min_replica (0), got 0")
}

func TestValidateAutoscaling_EmptyPrefixGivesBareFieldName(t *testing.T) {
	s := DefaultAutoscalingSettings()
	s.MinReplica = -2
	requireFieldError(t, ValidateAutoscaling("", s), "min_replica", ">= 0")
}

func TestValidatePromotion_DefaultsAreValid(t *testing.T) {
	require.NoError(t, ValidatePromotion("promotion_settings", DefaultPromotionSettings()))
}

func TestValidatePromotion_RangeEdges(t *testing.T) {
	type mod func(*PromotionSettings)
	tests := []struct {
		name    string
		mod     mod
		field   string
		message string
	}{
		{"SCALE_TO_ZERO is a strategy", func(s *PromotionSettings) { s.PromotionCleanupStrategy = "SCALE_TO_ZERO" }, "", ""},
		{"KEEP is a strategy", func(s *PromotionSettings) { s.PromotionCleanupStrategy = "KEEP" }, "", ""},
		{"DEACTIVATE is a strategy", func(s *PromotionSettings) { s.PromotionCleanupStrategy = "DEACTIVATE" }, "", ""},
		{"an unknown strategy is refused", func(s *PromotionSettings) { s.PromotionCleanupStrategy = "DELETE" }, "promotion_cleanup_strategy", `must be one of SCALE_TO_ZERO, KEEP, DEACTIVATE, got "DELETE"`},
		{"strategies are case-sensitive", func(s *PromotionSettings) { s.PromotionCleanupStrategy = "keep" }, "promotion_cleanup_strategy", `got "keep"`},
		{"an empty strategy is refused", func(s *PromotionSettings) { s.PromotionCleanupStrategy = "" }, "promotion_cleanup_strategy", `got ""`},
		{"ramp_up_duration_seconds 10 is the floor", func(s *PromotionSettings) { s.RampUpDurationSeconds = 10 }, "", ""},
		{"ramp_up_duration_seconds 9 is refused", func(s *PromotionSettings) { s.RampUpDurationSeconds = 9 }, "ramp_up_duration_seconds", "between 10 and 86400 seconds, got 9"},
		{"ramp_up_duration_seconds 86400 is the ceiling", func(s *PromotionSettings) { s.RampUpDurationSeconds = 86400 }, "", ""},
		{"ramp_up_duration_seconds 86401 is refused", func(s *PromotionSettings) { s.RampUpDurationSeconds = 86401 }, "ramp_up_duration_seconds", "got 86401"},
		{"max_error_rate_increase 0 is the floor", func(s *PromotionSettings) { s.CanaryAnalysis.MaxErrorRateIncrease = 0 }, "", ""},
		{"max_error_rate_increase below 0 is refused", func(s *PromotionSettings) { s.CanaryAnalysis.MaxErrorRateIncrease = -0.001 }, "canary_analysis.max_error_rate_increase", "between 0 and 1"},
		{"max_error_rate_increase 1 is the ceiling", func(s *PromotionSettings) { s.CanaryAnalysis.MaxErrorRateIncrease = 1 }, "", ""},
		{"max_error_rate_increase above 1 is refused", func(s *PromotionSettings) { s.CanaryAnalysis.MaxErrorRateIncrease = 1.001 }, "canary_analysis.max_error_rate_increase", "got 1.001"},
		{"max_error_rate_increase NaN is refused", func(s *PromotionSettings) { s.CanaryAnalysis.MaxErrorRateIncrease = math.NaN() }, "canary_analysis.max_error_rate_increase", "got NaN"},
		{"max_p99_latency_ratio 1 is the floor", func(s *PromotionSettings) { s.CanaryAnalysis.MaxP99LatencyRatio = 1 }, "", ""},
		{"max_p99_latency_ratio below 1 is refused", func(s *PromotionSettings) { s.CanaryAnalysis.MaxP99LatencyRatio = 0.999 }, "canary_analysis.max_p99_latency_ratio", "between 1 and 100, got 0.999"},
		{"max_p99_latency_ratio 100 is the ceiling", func(s *PromotionSettings) { s.CanaryAnalysis.MaxP99LatencyRatio = 100 }, "", ""},
		{"max_p99_latency_ratio above 100 is refused", func(s *PromotionSettings) { s.CanaryAnalysis.MaxP99LatencyRatio = 100.5 }, "canary_analysis.max_p99_latency_ratio", "got 100.5"},
		{"min_requests_per_stage 1 is the floor", func(s *PromotionSettings) { s.CanaryAnalysis.MinRequestsPerStage = 1 }, "", ""},
		{"min_requests_per_stage 0 is refused", func(s *PromotionSettings) { s.CanaryAnalysis.MinRequestsPerStage = 0 }, "canary_analysis.min_requests_per_stage", "between 1 and 1000000, got 0"},
		{"min_requests_per_stage 1000000 is the ceiling", func(s *PromotionSettings) { s.CanaryAnalysis.MinRequestsPerStage = 1000000 }, "", ""},
		{"min_requests_per_stage 1000001 is refused", func(s *PromotionSettings) { s.CanaryAnalysis.MinRequestsPerStage = 1000001 }, "canary_analysis.min_requests_per_stage", "got 1000001"},
		{"disabled canary analysis is still checked", func(s *PromotionSettings) {
			s.CanaryAnalysis.Enabled = false
			s.CanaryAnalysis.MinRequestsPerStage = 0
		}, "canary_analysis.min_requests_per_stage", "between 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := DefaultPromotionSettings()
			tt.mod(&s)
			err := ValidatePromotion("promotion_settings", s)
			if tt.field == "" {
				require.NoError(t, err)
				return
			}
			requireFieldError(t, err, "promotion_settings."+tt.field, tt.message)
		})
	}
}

func TestForDevelopment_ClampsToOneReplica(t *testing.T) {
	tests := []struct {
		name     string
		min, max int
		wantMin  int
		wantMax  int
	}{
		{"defaults stay", 0, 1, 0, 1},
		{"max above one is cut to one", 0, 5, 0, 1},
		{"min above one is cut to one", 3, 5, 1, 1},
		{"min of one stays", 1, 1, 1, 1},
		{"negative min becomes zero", -1, 1, 0, 1},
		{"max of zero is raised to one", 0, 0, 0, 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := DefaultAutoscalingSettings()
			in.MinReplica, in.MaxReplica = tt.min, tt.max
			in.ConcurrencyTarget = 7
			got := ForDevelopment(in)
			assert.Equal(t, tt.wantMin, got.MinReplica, "min_replica")
			assert.Equal(t, tt.wantMax, got.MaxReplica, "max_replica")
			assert.Equal(t, 7, got.ConcurrencyTarget, "other fields must be kept")
			require.NoError(t, ValidateAutoscaling("", got), "clamped settings must be valid")
		})
	}
}

func TestPatchAutoscaling(t *testing.T) {
	base := DefaultAutoscalingSettings()
	tests := []struct {
		name        string
		patch       string
		want        func(*AutoscalingSettings) // applied to base; nil: base
		wantChanged bool
		errField    string // set: an error naming this field is expected
		errMessage  string
	}{
		{name: "empty object changes nothing", patch: `{}`},
		{name: "same values are unchanged", patch: `{"min_replica": 0, "max_replica": 1}`},
		{name: "one field changes", patch: `{"max_replica": 4}`,
			want: func(s *AutoscalingSettings) { s.MaxReplica = 4 }, wantChanged: true},
		{name: "every field at once", patch: `{"min_replica": 2, "max_replica": 8, "autoscaling_window": 120,
			"scale_down_delay": 0, "concurrency_target": 4, "target_utilization_percentage": 100, "max_scale_down_rate": 1}`,
			want: func(s *AutoscalingSettings) {
				*s = AutoscalingSettings{MinReplica: 2, MaxReplica: 8, AutoscalingWindow: 120, ScaleDownDelay: 0,
					ConcurrencyTarget: 4, TargetUtilizationPercentage: 100, MaxScaleDownRate: 1}
			}, wantChanged: true},
		{name: "min above the stored max is refused on max", patch: `{"min_replica": 3}`,
			errField: "autoscaling_settings.max_replica", errMessage: "min_replica (3)"},
		{name: "out of range value is refused", patch: `{"autoscaling_window": 9}`,
			errField: "autoscaling_settings.autoscaling_window", errMessage: "between 10 and 3600"},
		{name: "unknown field is refused", patch: `{"max_replicas": 3}`,
			errField: "autoscaling_settings.max_replicas", errMessage: "unknown field; known fields are min_replica, max_replica"},
		{name: "string for an integer is refused", patch: `{"max_replica": "3"}`,
			errField: "autoscaling_settings.max_replica", errMessage: "must be an integer, got a string"},
		{name: "fraction for an integer is refused", patch: `{"max_replica": 1.5}`,
			errField: "autoscaling_settings.max_replica", errMessage: "must be an integer, got 1.5"},
		{name: "boolean for an integer is refused", patch: `{"scale_down_delay": true}`,
			errField: "autoscaling_settings.scale_down_delay", errMessage: "got a boolean"},
		{name: "integer too large for int is refused", patch: `{"max_replica": 99999999999999999999}`,
			errField: "autoscaling_settings.max_replica", errMessage: "out of range"},
		{name: "null for a field leaves it unchanged", patch: `{"min_replica": null, "max_replica": 4}`,
			want: func(s *AutoscalingSettings) { s.MaxReplica = 4 }, wantChanged: true},
		{name: "null for every field changes nothing", patch: `{"min_replica": null, "max_replica": null,
			"autoscaling_window": null, "scale_down_delay": null, "concurrency_target": null,
			"target_utilization_percentage": null, "max_scale_down_rate": null, "target_in_flight_tokens": null}`},
		{name: "null patch changes nothing", patch: `null`},
		{name: "target_in_flight_tokens is kept", patch: `{"target_in_flight_tokens": 40000}`,
			want: func(s *AutoscalingSettings) { s.TargetInFlightTokens = SomeInt(40000) }, wantChanged: true},
		{name: "target_in_flight_tokens of a string is refused", patch: `{"target_in_flight_tokens": "many"}`,
			errField: "autoscaling_settings.target_in_flight_tokens", errMessage: "must be an integer, got a string"},
		{name: "target_in_flight_tokens of 0 is refused", patch: `{"target_in_flight_tokens": 0}`,
			errField: "autoscaling_settings.target_in_flight_tokens", errMessage: "must be >= 1 or null, got 0"},
		{name: "null for an unknown field is still refused", patch: `{"max_replicas": null}`,
			errField: "autoscaling_settings.max_replicas", errMessage: "unknown field"},
		{name: "array patch is refused", patch: `[1]`,
			errField: "autoscaling_settings", errMessage: "must be a JSON object, got an array"},
		{name: "empty body is refused", patch: ``,
			errField: "autoscaling_settings", errMessage: "must be a JSON object"},
		{name: "malformed JSON is refused", patch: `{"min_replica": `,
			errField: "autoscaling_settings", errMessage: "must be a JSON object"},
		{name: "several mistakes report the first key in sorted order", patch: `{"zzz": 1, "aaa": 2}`,
			errField: "autoscaling_settings.aaa", errMessage: "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := PatchAutoscaling("autoscaling_settings", base, json.RawMessage(tt.patch))
			if tt.errField != "" {
				requireFieldError(t, err, tt.errField, tt.errMessage)
				assert.Equal(t, base, got, "on error the base settings come back")
				assert.False(t, changed)
				return
			}
			require.NoError(t, err)
			want := base
			if tt.want != nil {
				tt.want(&want)
			}
			assert.Equal(t, want, got)
			assert.Equal(t, tt.wantChanged, changed, "changed")
		})
	}
}

func TestPatchAutoscaling_DoesNotModifyBase(t *testing.T) {
	base := DefaultAutoscalingSettings()
	_, _, err := PatchAutoscaling("a", base, json.RawMessage(`{"max_replica": 9}`))
	require.NoError(t, err)
	assert.Equal(t, DefaultAutoscalingSettings(), base)
}

func TestPatchAutoscaling_WholeObjectOntoDefaultsReadsCreateRequest(t *testing.T) {
	got, changed, err := PatchAutoscaling("autoscaling_settings", DefaultAutoscalingSettings(),
		json.RawMessage(`{"min_replica": 1, "max_replica": 2}`))
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Equal(t, 1, got.MinReplica)
	assert.Equal(t, 2, got.MaxReplica)
	assert.Equal(t, 900, got.ScaleDownDelay, "unnamed fields keep their defaults")
}

func TestPatchPromotion(t *testing.T) {
	base := DefaultPromotionSettings()
	tests := []struct {
		name        string
		patch       string
		want        func(*PromotionSettings)
		wantChanged bool
		errField    string
		errMessage  string
	}{
		{name: "empty object changes nothing", patch: `{}`},
		{name: "same strategy is unchanged", patch: `{"promotion_cleanup_strategy": "SCALE_TO_ZERO"}`},
		{name: "booleans and strategy change", patch: `{"redeploy_on_promotion": true, "ramp_up_while_promoting": true,
			"promotion_cleanup_strategy": "KEEP", "ramp_up_duration_seconds": 10}`,
			want: func(s *PromotionSettings) {
				s.RedeployOnPromotion, s.RampUpWhilePromoting = true, true
				s.PromotionCleanupStrategy, s.RampUpDurationSeconds = "KEEP", 10
			}, wantChanged: true},
		{name: "nested canary patch keeps the other thresholds", patch: `{"canary_analysis": {"enabled": true}}`,
			want:        func(s *PromotionSettings) { s.CanaryAnalysis.Enabled = true },
			wantChanged: true},
		{name: "nested canary thresholds change", patch: `{"canary_analysis": {"max_error_rate_increase": 0.05, "max_p99_latency_ratio": 2, "min_requests_per_stage": 100}}`,
			want: func(s *PromotionSettings) {
				s.CanaryAnalysis.MaxErrorRateIncrease = 0.05
				s.CanaryAnalysis.MaxP99LatencyRatio = 2
				s.CanaryAnalysis.MinRequestsPerStage = 100
			}, wantChanged: true},
		{name: "empty nested canary object changes nothing", patch: `{"canary_analysis": {}}`},
		{name: "same nested canary values are unchanged", patch: `{"canary_analysis": {"enabled": false, "max_p99_latency_ratio": 1.5}}`},
		{name: "unknown strategy is refused", patch: `{"promotion_cleanup_strategy": "DELETE"}`,
			errField: "promotion_settings.promotion_cleanup_strategy", errMessage: "must be one of SCALE_TO_ZERO, KEEP, DEACTIVATE"},
		{name: "ramp up too short is refused", patch: `{"ramp_up_duration_seconds": 9}`,
			errField: "promotion_settings.ramp_up_duration_seconds", errMessage: "between 10 and 86400"},
		{name: "unknown top-level field is refused", patch: `{"canary": {}}`,
			errField: "promotion_settings.canary", errMessage: "unknown field"},
		{name: "unknown nested field is refused", patch: `{"canary_analysis": {"max_error_rate": 0.1}}`,
			errField: "promotion_settings.canary_analysis.max_error_rate", errMessage: "unknown field; known fields are enabled, max_error_rate_increase"},
		{name: "string for a boolean is refused", patch: `{"redeploy_on_promotion": "true"}`,
			errField: "promotion_settings.redeploy_on_promotion", errMessage: "must be true or false, got a string"},
		{name: "number for a strategy is refused", patch: `{"promotion_cleanup_strategy": 1}`,
			errField: "promotion_settings.promotion_cleanup_strategy", errMessage: "must be a string, got a number"},
		{name: "string for a float is refused", patch: `{"canary_analysis": {"max_p99_latency_ratio": "2"}}`,
			errField: "promotion_settings.canary_analysis.max_p99_latency_ratio", errMessage: "must be a number, got a string"},
		{name: "float too large is refused", patch: `{"canary_analysis": {"max_p99_latency_ratio": 1e400}}`,
			errField: "promotion_settings.canary_analysis.max_p99_latency_ratio", errMessage: "out of range"},
		{name: "nested threshold out of range is refused", patch: `{"canary_analysis": {"max_error_rate_increase": 1.5}}`,
			errField: "promotion_settings.canary_analysis.max_error_rate_increase", errMessage: "between 0 and 1"},
		{name: "null canary_analysis leaves it unchanged", patch: `{"canary_analysis": null}`},
		{name: "non-object canary_analysis is refused", patch: `{"canary_analysis": true}`,
			errField: "promotion_settings.canary_analysis", errMessage: "must be a JSON object, got a boolean"},
		{name: "null nested field leaves it unchanged", patch: `{"canary_analysis": {"enabled": null, "min_requests_per_stage": 5}}`,
			want: func(s *PromotionSettings) { s.CanaryAnalysis.MinRequestsPerStage = 5 }, wantChanged: true},
		{name: "null for every field of the spec's example changes nothing", patch: `{"promotion_cleanup_strategy": null,
			"ramp_up_duration_seconds": null, "ramp_up_while_promoting": null, "redeploy_on_promotion": null,
			"rolling_deploy": null, "rolling_deploy_config": null}`},
		{name: "rolling_deploy is kept", patch: `{"rolling_deploy": true}`,
			want: func(s *PromotionSettings) { s.RollingDeploy = true }, wantChanged: true},
		{name: "rolling_deploy of a string is refused", patch: `{"rolling_deploy": "yes"}`,
			errField: "promotion_settings.rolling_deploy", errMessage: "must be true or false, got a string"},
		{name: "rolling_deploy_config is patched field by field", patch: `{"rolling_deploy_config": {"max_surge_percent": 50,
			"stabilization_time_seconds": 300, "max_unavailable_percent": null}}`,
			want: func(s *PromotionSettings) {
				s.RollingDeployConfig.MaxSurgePercent, s.RollingDeployConfig.StabilizationTimeSeconds = 50, 300
			}, wantChanged: true},
		{name: "rolling_deploy_config of a number is refused", patch: `{"rolling_deploy_config": 3}`,
			errField: "promotion_settings.rolling_deploy_config", errMessage: "must be a JSON object, got a number"},
		{name: "unknown rolling deploy strategy is refused", patch: `{"rolling_deploy_config": {"rolling_deploy_strategy": "BLUE_GREEN"}}`,
			errField: "promotion_settings.rolling_deploy_config.rolling_deploy_strategy", errMessage: `must be one of REPLICA, got "BLUE_GREEN"`},
		{name: "surge over 100 percent is refused", patch: `{"rolling_deploy_config": {"max_surge_percent": 101}}`,
			errField: "promotion_settings.rolling_deploy_config.max_surge_percent", errMessage: "between 0 and 100 percent"},
		{name: "unknown rolling deploy field is refused", patch: `{"rolling_deploy_config": {"surge": 1}}`,
			errField: "promotion_settings.rolling_deploy_config.surge", errMessage: "unknown field"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := PatchPromotion("promotion_settings", base, json.RawMessage(tt.patch))
			if tt.errField != "" {
				requireFieldError(t, err, tt.errField, tt.errMessage)
				assert.Equal(t, base, got, "on error the base settings come back")
				assert.False(t, changed)
				return
			}
			require.NoError(t, err)
			want := base
			if tt.want != nil {
				tt.want(&want)
			}
			assert.Equal(t, want, got)
			assert.Equal(t, tt.wantChanged, changed, "changed")
		})
	}
}

func TestFieldError_MessageWithoutFieldIsBare(t *testing.T) {
	assert.Equal(t, "bad", (&FieldError{Message: "bad"}).Error())
	assert.Equal(t, "a.b: bad", (&FieldError{Field: "a.b", Message: "bad"}).Error())
}
