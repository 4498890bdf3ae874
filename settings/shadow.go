package settings

import (
	"database/sql/driver"
	"encoding/json"
	"math"
	"slices"

	"github.com/modelplane/modelplane"
)

// ShadowCompare is how the gateway compares a shadow copy's answer with the primary's.
type ShadowCompare string

// The comparisons.
const (
	// ShadowCompareJSON parses both answers as JSON and compares the values, numbers within
	// numeric_tolerance; answers that are not both JSON are compared byte for byte.
	ShadowCompareJSON ShadowCompare = "json"
	// ShadowCompareNone compares statuses only.
	ShadowCompareNone ShadowCompare = "none"
)

// ShadowCompares are every comparison, the default first.
func ShadowCompares() []ShadowCompare { return []ShadowCompare{ShadowCompareJSON, ShadowCompareNone} }

// Valid reports whether c is one of ShadowCompares.
func (c ShadowCompare) Valid() bool { return slices.Contains(ShadowCompares(), c) }

// ShadowSettings name the deployment that an environment's gateways copy a share of its
// requests to, and how its answers are compared with those of the deployment serving it.
type ShadowSettings struct {
	// DeploymentID is the shadow deployment, nil when the environment is not shadowed.
	DeploymentID *string `json:"deployment_id"`
	// Percent is the share of the environment's requests copied (0-100).
	Percent          int           `json:"percent"`
	Compare          ShadowCompare `json:"compare"`
	NumericTolerance float64       `json:"numeric_tolerance"`
}

// DefaultShadowSettings are an environment's until it names a shadow: naming one alone
// copies every request and compares the answers as JSON, exactly.
func DefaultShadowSettings() ShadowSettings {
	return ShadowSettings{Percent: MaxPercent, Compare: ShadowCompareJSON}
}

// Shadowing reports whether the settings name a shadow deployment.
func (s ShadowSettings) Shadowing() bool { return s.DeploymentID != nil }

// Equal reports whether s and o are the same settings.
func (s ShadowSettings) Equal(o ShadowSettings) bool {
	return s.Percent == o.Percent && s.Compare == o.Compare && s.NumericTolerance == o.NumericTolerance &&
		(s.DeploymentID == nil) == (o.DeploymentID == nil) && (s.DeploymentID == nil || *s.DeploymentID == *o.DeploymentID)
}

// Value stores the settings as JSON.
func (s ShadowSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON over the defaults, so the empty object of an
// environment that never named a shadow reads as DefaultShadowSettings.
func (s *ShadowSettings) Scan(src any) error {
	*s = DefaultShadowSettings()
	return modelplane.ScanJSON(src, s)
}

// PatchShadow applies patch, a JSON object holding some of the settings' fields, onto base
// and validates the result, as PatchAutoscaling does. deployment_id null turns shadowing off;
// whether the deployment exists is for the caller to check. changed reports whether the
// result differs from base.
func PatchShadow(prefix string, base ShadowSettings, patch json.RawMessage) (ShadowSettings, bool, error) {
	out := base
	fields := []field{
		{name: "deployment_id", takesNull: true, set: func(path string, raw json.RawMessage) error {
			v, err := decodeValue(raw)
			if err != nil {
				return fieldErr(path, "is not valid JSON: %v", err)
			}
			if v == nil {
				out.DeploymentID = nil
				return nil
			}
			id, ok := v.(string)
			if !ok || id == "" {
				return fieldErr(path, "must be a deployment ID, or null to stop shadowing; got %s", describe(v))
			}
			out.DeploymentID = &id
			return nil
		}},
		{name: "percent", set: intField(&out.Percent)},
		{name: "compare", set: stringField(&out.Compare)},
		{name: "numeric_tolerance", set: floatField(&out.NumericTolerance)},
	}
	if err := applyObject(prefix, patch, fields); err != nil {
		return base, false, err
	}
	if err := ValidateShadow(prefix, out); err != nil {
		return base, false, err
	}
	return out, !out.Equal(base), nil
}

// ValidateShadow checks s's ranges and returns a *FieldError for the first field out of one.
func ValidateShadow(prefix string, s ShadowSettings) error {
	f := func(name string) string { return join(prefix, name) }
	if err := intRange(f("percent"), s.Percent, 0, MaxPercent, " percent"); err != nil {
		return err
	}
	if !s.Compare.Valid() {
		return fieldErr(f("compare"), "must be one of %s, got %q", joinValues(ShadowCompares()), s.Compare)
	}
	if !(s.NumericTolerance >= 0) || math.IsInf(s.NumericTolerance, 1) {
		return fieldErr(f("numeric_tolerance"), "must be a finite number >= 0, got %g", s.NumericTolerance)
	}
	return nil
}
