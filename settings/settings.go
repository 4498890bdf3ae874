// Package settings holds the API's autoscaling and promotion settings: their types and
// defaults, the allowed ranges (API.md) and how a PATCH of some fields applies to the stored
// settings. Everything here is a pure function, so the API handlers, the workflows, the
// autoscaler and the tests all agree on what a valid settings object is. The store keeps
// the settings as JSON columns (column.go) and knows nothing else of them.
package settings

import (
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/modelplane/modelplane"
)

// AutoscalingSettings are a deployment's or environment's scaling bounds (API.md lists the
// ranges, ValidateAutoscaling checks them).
type AutoscalingSettings struct {
	MinReplica                  int `json:"min_replica"`
	MaxReplica                  int `json:"max_replica"`
	AutoscalingWindow           int `json:"autoscaling_window"`            // seconds
	ScaleDownDelay              int `json:"scale_down_delay"`              // seconds
	ConcurrencyTarget           int `json:"concurrency_target"`            // requests per replica
	TargetUtilizationPercentage int `json:"target_utilization_percentage"` // of concurrency_target
	MaxScaleDownRate            int `json:"max_scale_down_rate"`           // percent of replicas per step
	// TargetInFlightTokens is kept and answered back but not yet acted on: the autoscaler
	// scales on requests in flight (concurrency_target). Unset is null on the wire.
	TargetInFlightTokens OptionalInt `json:"target_in_flight_tokens"`
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
	RedeployOnPromotion bool `json:"redeploy_on_promotion"`
	// RollingDeploy replaces the previous deployment's replicas in batches paced by
	// RollingDeployConfig instead of ramping the traffic (workflows' rolling deploy).
	RollingDeploy            bool                       `json:"rolling_deploy"`
	PromotionCleanupStrategy modelplane.CleanupStrategy `json:"promotion_cleanup_strategy"`
	RollingDeployConfig      RollingDeployConfig        `json:"rolling_deploy_config"`
	RampUpWhilePromoting     bool                       `json:"ramp_up_while_promoting"`
	RampUpDurationSeconds    int                        `json:"ramp_up_duration_seconds"`
	CanaryAnalysis           CanaryAnalysis             `json:"canary_analysis"`
	// ShadowMinAgreement, when set, is the percent of shadow copies whose answer must have
	// agreed with the serving deployment's before the environment's shadow deployment may be
	// promoted into it, over at least ShadowMinCopies compared copies.
	ShadowMinAgreement OptionalFloat `json:"shadow_min_agreement"`
	ShadowMinCopies    int           `json:"shadow_min_copies"`
}

// RollingDeployStrategy is how a rolling deploy replaces replicas (Baseten's
// RollingDeployStrategyV1).
type RollingDeployStrategy string

// RollingDeployReplica replaces the previous deployment's replicas one batch at a time.
const RollingDeployReplica RollingDeployStrategy = "REPLICA"

// RollingDeployStrategies are every strategy, in the spec's order.
func RollingDeployStrategies() []RollingDeployStrategy {
	return []RollingDeployStrategy{RollingDeployReplica}
}

// RollingDeployConfig is Baseten's RollingDeployConfigV1: how a rolling deploy paces itself.
// Percentages are of the previous deployment's ready replicas; ReplicaOverheadPercent is kept
// and not acted on.
type RollingDeployConfig struct {
	RollingDeployStrategy    RollingDeployStrategy `json:"rolling_deploy_strategy"`
	MaxSurgePercent          int                   `json:"max_surge_percent"`
	MaxUnavailablePercent    int                   `json:"max_unavailable_percent"`
	StabilizationTimeSeconds int                   `json:"stabilization_time_seconds"`
	ReplicaOverheadPercent   int                   `json:"replica_overhead_percent"`
}

// DefaultRollingDeployConfig is the spec's defaults.
func DefaultRollingDeployConfig() RollingDeployConfig {
	return RollingDeployConfig{RollingDeployStrategy: RollingDeployReplica, MaxSurgePercent: 25}
}

// DefaultPromotionSettings switch traffic at once and scale the previous deployment to zero.
func DefaultPromotionSettings() PromotionSettings {
	return PromotionSettings{
		PromotionCleanupStrategy: modelplane.CleanupScaleToZero,
		RollingDeployConfig:      DefaultRollingDeployConfig(),
		RampUpDurationSeconds:    600,
		CanaryAnalysis: CanaryAnalysis{
			MaxErrorRateIncrease: 0.01,
			MaxP99LatencyRatio:   1.5,
			MinRequestsPerStage:  20,
		},
		ShadowMinCopies: DefaultShadowMinCopies,
	}
}

// ErrInvalid is what every *FieldError matches with errors.Is, so the API's one error
// handler can answer 400 without knowing this package's types.
var ErrInvalid = errors.New("settings: invalid")

// FieldError names the field that breaks a rule and the rule, e.g. Field
// "autoscaling_settings.max_replica", Message "must be >= 1 and >= min_replica (0)".
type FieldError struct {
	// Field is the dotted path of the field, starting with the prefix the caller gave.
	Field string
	// Message states the rule, and the value that broke it where that helps.
	Message string
}

// Error implements error as "<field>: <message>".
func (e *FieldError) Error() string {
	if e.Field == "" {
		return e.Message
	}
	return e.Field + ": " + e.Message
}

// Unwrap lets errors.Is(err, ErrInvalid) hold.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// join builds a field path; an empty prefix leaves the bare name, for callers whose settings
// object is the whole request body.
func join(prefix, name string) string {
	if prefix == "" {
		return name
	}
	return prefix + "." + name
}

// Ranges of the autoscaling settings, inclusive. API.md is the source; these are the same
// numbers in code.
const (
	MinAutoscalingWindow = 10   // seconds
	MaxAutoscalingWindow = 3600 // seconds
	MinScaleDownDelay    = 0    // seconds
	MaxScaleDownDelay    = 3600 // seconds
	MinConcurrencyTarget = 1
	// MaxConcurrencyTarget is not in API.md; it stops a typo (an extra few zeros) from
	// making a deployment that never scales up.
	MaxConcurrencyTarget = 10000
	MinTargetUtilization = 1   // percent
	MaxTargetUtilization = 100 // percent
	MinMaxScaleDownRate  = 1   // percent of replicas per step
	MaxMaxScaleDownRate  = 50  // percent of replicas per step
)

// Ranges of the promotion settings, inclusive.
const (
	MinRampUpDurationSeconds = 10
	MaxRampUpDurationSeconds = 86400
	MinMaxErrorRateIncrease  = 0.0
	MaxMaxErrorRateIncrease  = 1.0
	MinMaxP99LatencyRatio    = 1.0
	// MaxMaxP99LatencyRatio caps the ratio because beyond it the analysis would pass any
	// candidate, which is better said by turning the analysis off.
	MaxMaxP99LatencyRatio  = 100.0
	MinMinRequestsPerStage = 1
	MaxMinRequestsPerStage = 1000000
	// DefaultShadowMinCopies and MaxShadowMinCopies are the default and the upper bound of
	// promotion_settings.shadow_min_copies.
	DefaultShadowMinCopies = 100
	MaxShadowMinCopies     = 1_000_000
	// MaxPercent bounds the rolling deploy's surge, unavailable and overhead percentages and
	// the share of requests copied to a shadow.
	MaxPercent = 100
	// MaxStabilizationTimeSeconds is a day, like MaxRampUpDurationSeconds.
	MaxStabilizationTimeSeconds = 86400
	// MinTargetInFlightTokens: a target of no tokens would scale on any traffic at all.
	MinTargetInFlightTokens = 1
)

// ValidateAutoscaling checks s against the ranges in API.md and returns a *FieldError for
// the first field, in the JSON object's order, that is out of range. prefix is the path of
// the settings object, e.g. "autoscaling_settings".
func ValidateAutoscaling(prefix string, s AutoscalingSettings) error {
	f := func(name string) string { return join(prefix, name) }
	switch {
	case s.MinReplica < 0:
		return fieldErr(f("min_replica"), "must be >= 0, got %d", s.MinReplica)
	case s.MaxReplica < 1 || s.MaxReplica < s.MinReplica:
		return fieldErr(f("max_replica"), "must be >= 1 and >= min_replica (%d), got %d", s.MinReplica, s.MaxReplica)
	}
	if err := intRange(f("autoscaling_window"), s.AutoscalingWindow, MinAutoscalingWindow, MaxAutoscalingWindow, " seconds"); err != nil {
		return err
	}
	if err := intRange(f("scale_down_delay"), s.ScaleDownDelay, MinScaleDownDelay, MaxScaleDownDelay, " seconds"); err != nil {
		return err
	}
	if err := intRange(f("concurrency_target"), s.ConcurrencyTarget, MinConcurrencyTarget, MaxConcurrencyTarget, " requests per replica"); err != nil {
		return err
	}
	if err := intRange(f("target_utilization_percentage"), s.TargetUtilizationPercentage, MinTargetUtilization, MaxTargetUtilization, " percent"); err != nil {
		return err
	}
	if err := intRange(f("max_scale_down_rate"), s.MaxScaleDownRate, MinMaxScaleDownRate, MaxMaxScaleDownRate, " percent of replicas per step"); err != nil {
		return err
	}
	if t, ok := s.TargetInFlightTokens.Get(); ok && t < MinTargetInFlightTokens {
		return fieldErr(f("target_in_flight_tokens"), "must be >= %d or null, got %d", MinTargetInFlightTokens, t)
	}
	return nil
}

// ValidatePromotion checks s against the ranges in API.md and returns a *FieldError for the
// first field that is wrong. canary_analysis is checked even while disabled, so turning it
// on later never activates thresholds that nobody could have set.
func ValidatePromotion(prefix string, s PromotionSettings) error {
	f := func(name string) string { return join(prefix, name) }
	if !s.PromotionCleanupStrategy.Valid() {
		return fieldErr(f("promotion_cleanup_strategy"), "must be one of %s, got %q",
			joinValues(modelplane.CleanupStrategies()), s.PromotionCleanupStrategy)
	}
	if err := validateRollingDeploy(f("rolling_deploy_config"), s.RollingDeployConfig); err != nil {
		return err
	}
	if err := intRange(f("ramp_up_duration_seconds"), s.RampUpDurationSeconds, MinRampUpDurationSeconds, MaxRampUpDurationSeconds, " seconds"); err != nil {
		return err
	}
	if err := validateCanary(f("canary_analysis"), s.CanaryAnalysis); err != nil {
		return err
	}
	if v, ok := s.ShadowMinAgreement.Get(); ok && !(v >= 0 && v <= MaxPercent) {
		return fieldErr(f("shadow_min_agreement"), "must be between 0 and %d percent, or null for no shadow gate; got %g", MaxPercent, v)
	}
	return intRange(f("shadow_min_copies"), s.ShadowMinCopies, 1, MaxShadowMinCopies, " copies")
}

func validateRollingDeploy(prefix string, r RollingDeployConfig) error {
	f := func(name string) string { return join(prefix, name) }
	if !slices.Contains(RollingDeployStrategies(), r.RollingDeployStrategy) {
		return fieldErr(f("rolling_deploy_strategy"), "must be one of %s, got %q",
			joinValues(RollingDeployStrategies()), r.RollingDeployStrategy)
	}
	for _, p := range []struct {
		name string
		v    int
	}{{"max_surge_percent", r.MaxSurgePercent}, {"max_unavailable_percent", r.MaxUnavailablePercent}} {
		if err := intRange(f(p.name), p.v, 0, MaxPercent, " percent"); err != nil {
			return err
		}
	}
	if err := intRange(f("stabilization_time_seconds"), r.StabilizationTimeSeconds, 0, MaxStabilizationTimeSeconds, " seconds"); err != nil {
		return err
	}
	return intRange(f("replica_overhead_percent"), r.ReplicaOverheadPercent, 0, MaxPercent, " percent")
}

func validateCanary(prefix string, c CanaryAnalysis) error {
	f := func(name string) string { return join(prefix, name) }
	// The negated comparisons also catch NaN, which a Go caller (not JSON) could pass.
	if !(c.MaxErrorRateIncrease >= MinMaxErrorRateIncrease && c.MaxErrorRateIncrease <= MaxMaxErrorRateIncrease) {
		return fieldErr(f("max_error_rate_increase"), "must be between %g and %g (a fraction of requests), got %g",
			MinMaxErrorRateIncrease, MaxMaxErrorRateIncrease, c.MaxErrorRateIncrease)
	}
	if !(c.MaxP99LatencyRatio >= MinMaxP99LatencyRatio && c.MaxP99LatencyRatio <= MaxMaxP99LatencyRatio) {
		return fieldErr(f("max_p99_latency_ratio"), "must be between %g and %g, got %g",
			MinMaxP99LatencyRatio, MaxMaxP99LatencyRatio, c.MaxP99LatencyRatio)
	}
	return intRange(f("min_requests_per_stage"), c.MinRequestsPerStage, MinMinRequestsPerStage, MaxMinRequestsPerStage, "")
}

func intRange(field string, v, lo, hi int, unit string) error {
	if v < lo || v > hi {
		return fieldErr(field, "must be between %d and %d%s, got %d", lo, hi, unit, v)
	}
	return nil
}

// ForDevelopment clamps s for the development deployment, which always runs at most one
// replica (live reload patches a single process): max_replica becomes 1 and min_replica at
// most 1, so scale to zero still works.
func ForDevelopment(s AutoscalingSettings) AutoscalingSettings {
	s.MaxReplica = 1
	s.MinReplica = min(max(s.MinReplica, 0), 1)
	return s
}

// joinValues lists a vocabulary's values for an error message: "A, B, C".
func joinValues[T ~string](values []T) string {
	s := make([]string, len(values))
	for i, v := range values {
		s[i] = string(v)
	}
	return strings.Join(s, ", ")
}
