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
		{"min_replica", intField(&out.MinReplica)},
		{"max_replica", intField(&out.MaxReplica)},
		{"autoscaling_window", intField(&out.AutoscalingWindow)},
		{"scale_down_delay", intField(&out.ScaleDownDelay)},
		{"concurrency_target", intField(&out.ConcurrencyTarget)},
		{"target_utilization_percentage", intField(&out.TargetUtilizationPercentage)},
		{"max_scale_down_rate", intField(&out.MaxScaleDownRate)},
	}
	if err := applyObject(prefix, patch, fields); err != nil {
		return base, false, err
	}
	if err := ValidateAutoscaling(prefix, out); err != nil {
		return base, false, err
	}
	return out, out != base, nil
}

// PatchPromotion applies patch onto base as PatchAutoscaling does. canary_analysis is itself
// patched field by field, so {"canary_analysis": {"enabled": true}} keeps the thresholds.
func PatchPromotion(prefix string, base PromotionSettings, patch json.RawMessage) (PromotionSettings, bool, error) {
	out := base
	canary := []field{
		{"enabled", boolField(&out.CanaryAnalysis.Enabled)},
		{"max_error_rate_increase", floatField(&out.CanaryAnalysis.MaxErrorRateIncrease)},
		{"max_p99_latency_ratio", floatField(&out.CanaryAnalysis.MaxP99LatencyRatio)},
		{"min_requests_per_stage", intField(&out.CanaryAnalysis.MinRequestsPerStage)},
	}
	fields := []field{
		{"redeploy_on_promotion", boolField(&out.RedeployOnPromotion)},
		{"promotion_cleanup_strategy", stringField(&out.PromotionCleanupStrategy)},
		{"ramp_up_while_promoting", boolField(&out.RampUpWhilePromoting)},
		{"ramp_up_duration_seconds", intField(&out.RampUpDurationSeconds)},
		{"canary_analysis", func(path string, raw json.RawMessage) error { return applyObject(path, raw, canary) }},
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
}

// applyObject sets the fields that raw, a JSON object, names. Keys are handled in sorted
// order so that a patch with several mistakes always reports the same one.
func applyObject(path string, raw json.RawMessage, fields []field) error {
	v, err := decodeValue(raw)
	if err != nil {
		return fieldErr(path, "must be a JSON object: %v", err)
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
