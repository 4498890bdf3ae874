package settings

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
	"strconv"
	"strings"
)

// PatchAutoscaling applies patch, a JSON object holding some of the settings' fields, onto
// base and validates the result. It is also how a whole settings object in a create request
// is read: patch it onto DefaultAutoscalingSettings().
//
// An unknown field, a field of the wrong JSON type and a null field are each a *FieldError
// naming the field, so a client's typo is refused rather than silently ignored. changed
// reports whether the result differs from base, which is how the API answers UNCHANGED. On
// error base comes back as it was.
func PatchAutoscaling(prefix string, base AutoscalingSettings, patch json.RawMessage) (AutoscalingSettings, bool, error) {
	out := base
	fields := []field{
		{name: "min_replica", set: intField(&out.MinReplica)},
		{name: "max_replica", set: intField(&out.MaxReplica)},
		{name: "autoscaling_window", set: intField(&out.AutoscalingWindow)},
		{name: "scale_down_delay", set: intField(&out.ScaleDownDelay)},
		{name: "concurrency_target", set: intField(&out.ConcurrencyTarget)},
		{name: "target_utilization_percentage", set: intField(&out.TargetUtilizationPercentage)},
		{name: "max_scale_down_rate", set: intField(&out.MaxScaleDownRate)},
		{name: "target_in_flight_tokens", set: optIntField(&out.TargetInFlightTokens)},
	}
	if err := applyObject(prefix, patch, fields); err != nil {
		return base, false, err
	}
	if err := ValidateAutoscaling(prefix, out); err != nil {
		return base, false, err
	}
	return out, out != base, nil
}

// PatchPromotion applies patch onto base as PatchAutoscaling does. canary_analysis and
// rolling_deploy_config are themselves patched field by field, so
// {"canary_analysis": {"enabled": true}} keeps the thresholds.
func PatchPromotion(prefix string, base PromotionSettings, patch json.RawMessage) (PromotionSettings, bool, error) {
	out := base
	canary := []field{
		{name: "enabled", set: boolField(&out.CanaryAnalysis.Enabled)},
		{name: "max_error_rate_increase", set: floatField(&out.CanaryAnalysis.MaxErrorRateIncrease)},
		{name: "max_p99_latency_ratio", set: floatField(&out.CanaryAnalysis.MaxP99LatencyRatio)},
		{name: "min_requests_per_stage", set: intField(&out.CanaryAnalysis.MinRequestsPerStage)},
	}
	rolling := []field{
		{name: "rolling_deploy_strategy", set: stringField(&out.RollingDeployConfig.RollingDeployStrategy)},
		{name: "max_surge_percent", set: intField(&out.RollingDeployConfig.MaxSurgePercent)},
		{name: "max_unavailable_percent", set: intField(&out.RollingDeployConfig.MaxUnavailablePercent)},
		{name: "stabilization_time_seconds", set: intField(&out.RollingDeployConfig.StabilizationTimeSeconds)},
		{name: "replica_overhead_percent", set: intField(&out.RollingDeployConfig.ReplicaOverheadPercent)},
	}
	fields := []field{
		{name: "redeploy_on_promotion", set: boolField(&out.RedeployOnPromotion)},
		{name: "rolling_deploy", set: boolField(&out.RollingDeploy)},
		{name: "promotion_cleanup_strategy", set: stringField(&out.PromotionCleanupStrategy)},
		{name: "rolling_deploy_config", set: func(path string, raw json.RawMessage) error { return applyObject(path, raw, rolling) }},
		{name: "ramp_up_while_promoting", set: boolField(&out.RampUpWhilePromoting)},
		{name: "ramp_up_duration_seconds", set: intField(&out.RampUpDurationSeconds)},
		{name: "canary_analysis", set: func(path string, raw json.RawMessage) error { return applyObject(path, raw, canary) }},
		// null turns the shadow gate off.
		{name: "shadow_min_agreement", takesNull: true, set: func(path string, raw json.RawMessage) error {
			if IsNull(raw) {
				out.ShadowMinAgreement = OptionalFloat{}
				return nil
			}
			var v float64
			if err := floatField(&v)(path, raw); err != nil {
				return err
			}
			out.ShadowMinAgreement = Some(v)
			return nil
		}},
		{name: "shadow_min_copies", set: intField(&out.ShadowMinCopies)},
	}
	if err := applyObject(prefix, patch, fields); err != nil {
		return base, false, err
	}
	if err := ValidatePromotion(prefix, out); err != nil {
		return base, false, err
	}
	return out, out != base, nil
}

// field is one JSON key of a settings object and how to store its value.
type field struct {
	name string
	set  func(path string, raw json.RawMessage) error
	// takesNull hands null to set, for a field whose null means something of its own (a
	// backpressure policy's "none"); for every other field null leaves the value as it is.
	takesNull bool
}

// IsNull reports whether raw is the JSON null.
func IsNull(raw json.RawMessage) bool {
	return bytes.Equal(bytes.TrimSpace(raw), []byte("null"))
}

// applyObject sets the fields that raw, a JSON object, names. Keys are handled in sorted
// order so that a patch with several mistakes always reports the same one. A null object
// sets nothing, and so does a null field unless it takes null.
func applyObject(path string, raw json.RawMessage, fields []field) error {
	v, err := decodeValue(raw)
	if err != nil {
		return fieldErr(path, "must be a JSON object: %v", err)
	}
	if v == nil {
		return nil
	}
	if _, ok := v.(map[string]any); !ok {
		return fieldErr(path, "must be a JSON object, got %s", kindOf(v))
	}
	var obj map[string]json.RawMessage
	if err := json.Unmarshal(raw, &obj); err != nil {
		return fieldErr(path, "must be a JSON object: %v", err)
	}
	keys := make([]string, 0, len(obj))
	for k := range obj {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		i := slices.IndexFunc(fields, func(f field) bool { return f.name == k })
		if i < 0 {
			names := make([]string, len(fields))
			for j, f := range fields {
				names[j] = f.name
			}
			return fieldErr(join(path, k), "unknown field; known fields are %s", strings.Join(names, ", "))
		}
		if IsNull(obj[k]) && !fields[i].takesNull {
			continue
		}
		if err := fields[i].set(join(path, k), obj[k]); err != nil {
			return err
		}
	}
	return nil
}

// decodeValue reads one JSON value keeping numbers as written, so 1.5 is not mistaken for 1
// and a huge integer is not rounded through float64.
func decodeValue(raw json.RawMessage) (any, error) {
	if len(bytes.TrimSpace(raw)) == 0 {
		return nil, errors.New("the body is empty")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("more than one JSON value")
	}
	return v, nil
}

// kindOf names a decoded JSON value's type for error messages.
func kindOf(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case string:
		return "a string"
	case json.Number:
		return "a number"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return "an unknown JSON value"
}

// scalar decodes raw, refusing null with a message that says so: null would otherwise read as
// "reset to zero", which for most fields is out of range and for booleans a silent change.
// applyObject skips null fields before they get here; this guards a setter used elsewhere.
func scalar(path string, raw json.RawMessage) (any, error) {
	v, err := decodeValue(raw)
	if err != nil {
		return nil, fieldErr(path, "is not valid JSON: %v", err)
	}
	if v == nil {
		return nil, fieldErr(path, "must not be null; leave the field out to keep its value")
	}
	return v, nil
}

func intField(dst *int) func(string, json.RawMessage) error {
	return func(path string, raw json.RawMessage) error {
		v, err := scalar(path, raw)
		if err != nil {
			return err
		}
		n, ok := v.(json.Number)
		if !ok {
			return fieldErr(path, "must be an integer, got %s", kindOf(v))
		}
		i, err := strconv.Atoi(n.String())
		if errors.Is(err, strconv.ErrRange) {
			return fieldErr(path, "is out of range, got %s", n)
		}
		if err != nil {
			return fieldErr(path, "must be an integer, got %s", n)
		}
		*dst = i
		return nil
	}
}

// optIntField sets an OptionalInt from a JSON integer.
func optIntField(dst *OptionalInt) func(string, json.RawMessage) error {
	var i int
	set := intField(&i)
	return func(path string, raw json.RawMessage) error {
		if err := set(path, raw); err != nil {
			return err
		}
		*dst = SomeInt(i)
		return nil
	}
}

func floatField(dst *float64) func(string, json.RawMessage) error {
	return func(path string, raw json.RawMessage) error {
		v, err := scalar(path, raw)
		if err != nil {
			return err
		}
		n, ok := v.(json.Number)
		if !ok {
			return fieldErr(path, "must be a number, got %s", kindOf(v))
		}
		f, err := n.Float64()
		if err != nil {
			return fieldErr(path, "is out of range, got %s", n)
		}
		*dst = f
		return nil
	}
}

func boolField(dst *bool) func(string, json.RawMessage) error {
	return typedField(dst, "true or false")
}

// stringField decodes a JSON string into dst, which may be a string type of its own such as
// modelplane.CleanupStrategy; the value is checked by the Validate functions, not here.
func stringField[T ~string](dst *T) func(string, json.RawMessage) error {
	var s string
	set := typedField(&s, "a string")
	return func(path string, raw json.RawMessage) error {
		if err := set(path, raw); err != nil {
			return err
		}
		*dst = T(s)
		return nil
	}
}

// typedField decodes a JSON scalar of type T (bool or string) into dst; want names the type
// in the error.
func typedField[T bool | string](dst *T, want string) func(string, json.RawMessage) error {
	return func(path string, raw json.RawMessage) error {
		v, err := scalar(path, raw)
		if err != nil {
			return err
		}
		t, ok := v.(T)
		if !ok {
			return fieldErr(path, "must be %s, got %s", want, kindOf(v))
		}
		*dst = t
		return nil
	}
}
