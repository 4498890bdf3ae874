package store

import (
	"database/sql/driver"
	"encoding/json"
	"fmt"

	"github.com/modelplane/modelplane"
)

// AutoscalingSettings are a deployment's or environment's scaling bounds (API.md lists the
// ranges). They are stored as JSON.
type AutoscalingSettings struct {
	MinReplica                  int `json:"min_replica"`
	MaxReplica                  int `json:"max_replica"`
	AutoscalingWindow           int `json:"autoscaling_window"`            // seconds
	ScaleDownDelay              int `json:"scale_down_delay"`              // seconds
	ConcurrencyTarget           int `json:"concurrency_target"`            // requests per replica
	TargetUtilizationPercentage int `json:"target_utilization_percentage"` // of concurrency_target
	MaxScaleDownRate            int `json:"max_scale_down_rate"`           // percent of replicas per step
}

// DefaultAutoscalingSettings are the settings a new deployment or environment starts with:
// scale to zero after 15 idle minutes, at most one replica.
func DefaultAutoscalingSettings() AutoscalingSettings {
	return AutoscalingSettings{
		MinReplica:                  0,
		MaxReplica:                  1,
		AutoscalingWindow:           60,
		ScaleDownDelay:              900,
		ConcurrencyTarget:           1,
		TargetUtilizationPercentage: 70,
		MaxScaleDownRate:            50,
	}
}

// CanaryAnalysis compares a promotion's candidate with the current deployment at each stage.
type CanaryAnalysis struct {
	Enabled              bool    `json:"enabled"`
	MaxErrorRateIncrease float64 `json:"max_error_rate_increase"`
	MaxP99LatencyRatio   float64 `json:"max_p99_latency_ratio"`
	MinRequestsPerStage  int     `json:"min_requests_per_stage"`
}

// PromotionSettings say how an environment takes a new deployment.
type PromotionSettings struct {
	RedeployOnPromotion      bool                       `json:"redeploy_on_promotion"`
	PromotionCleanupStrategy modelplane.CleanupStrategy `json:"promotion_cleanup_strategy"`
	RampUpWhilePromoting     bool                       `json:"ramp_up_while_promoting"`
	RampUpDurationSeconds    int                        `json:"ramp_up_duration_seconds"`
	CanaryAnalysis           CanaryAnalysis             `json:"canary_analysis"`
}

// DefaultPromotionSettings switch traffic at once and scale the previous deployment to zero.
func DefaultPromotionSettings() PromotionSettings {
	return PromotionSettings{
		PromotionCleanupStrategy: modelplane.CleanupScaleToZero,
		RampUpDurationSeconds:    600,
		CanaryAnalysis: CanaryAnalysis{
			MaxErrorRateIncrease: 0.01,
			MaxP99LatencyRatio:   1.5,
			MinRequestsPerStage:  20,
		},
	}
}

// Value stores the settings as JSON.
func (s AutoscalingSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON.
func (s *AutoscalingSettings) Scan(src any) error { return scanJSON(src, s) }

// Value stores the settings as JSON.
func (s PromotionSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON.
func (s *PromotionSettings) Scan(src any) error { return scanJSON(src, s) }

// JSONMap is a free-form JSON object column (labels, configs, details).
type JSONMap map[string]any

// Value stores the map as JSON; a nil map is stored as {}.
func (m JSONMap) Value() (driver.Value, error) {
	if m == nil {
		return []byte("{}"), nil
	}
	return json.Marshal(m)
}

// Scan reads the map from JSON.
func (m *JSONMap) Scan(src any) error { return scanJSON(src, m) }

func scanJSON(src, dest any) error {
	switch v := src.(type) {
	case []byte:
		return json.Unmarshal(v, dest)
	case string:
		return json.Unmarshal([]byte(v), dest)
	case nil:
		return nil
	}
	return fmt.Errorf("store: cannot read %T as JSON", src)
}
