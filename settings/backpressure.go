package settings

import (
	"database/sql/driver"
	"encoding/json"
	"slices"

	"github.com/modelplane/modelplane"
)

// BackpressurePolicy is what the gateway does with a request that finds every READY replica
// of its deployment at its concurrency target (Baseten's RequestBackpressurePolicyV1).
type BackpressurePolicy string

// The backpressure policies. No policy (a nil one in RequestBackpressureSettings) forwards
// every request whatever the replicas have in flight.
const (
	// BackpressureQueueOnFull holds a request until a replica has room, at most
	// concurrency_target requests per READY replica; beyond that the request is refused (429).
	BackpressureQueueOnFull BackpressurePolicy = "QUEUE_ON_FULL"
	// BackpressureRejectOnFull refuses the request at once (429).
	BackpressureRejectOnFull BackpressurePolicy = "REJECT_ON_FULL"
)

// BackpressurePolicies are every policy, in the spec's order.
func BackpressurePolicies() []BackpressurePolicy {
	return []BackpressurePolicy{BackpressureQueueOnFull, BackpressureRejectOnFull}
}

// Valid reports whether p is one of BackpressurePolicies.
func (p BackpressurePolicy) Valid() bool { return slices.Contains(BackpressurePolicies(), p) }

// RequestBackpressureSettings are a deployment's request backpressure settings; an
// environment shows those of the deployment it serves.
type RequestBackpressureSettings struct {
	// Policy is nil when no policy is set.
	Policy *BackpressurePolicy `json:"policy"`
}

// Value stores the settings as JSON.
func (s RequestBackpressureSettings) Value() (driver.Value, error) { return json.Marshal(s) }

// Scan reads the settings from JSON; an unknown stored policy reads as none, so a value
// written by a newer release never stops a row from being read.
func (s *RequestBackpressureSettings) Scan(src any) error {
	*s = RequestBackpressureSettings{}
	if err := modelplane.ScanJSON(src, s); err != nil {
		return err
	}
	if s.Policy != nil && !s.Policy.Valid() {
		s.Policy = nil
	}
	return nil
}

// Equal reports whether s and o set the same policy.
func (s RequestBackpressureSettings) Equal(o RequestBackpressureSettings) bool {
	return s.PolicyOrNone() == o.PolicyOrNone()
}

// PolicyOrNone is the policy, "" when none is set.
func (s RequestBackpressureSettings) PolicyOrNone() BackpressurePolicy {
	if s.Policy == nil {
		return ""
	}
	return *s.Policy
}

// PatchBackpressure applies patch, a JSON object with the field policy, onto base: a policy
// sets it, null clears it (as the spec says), and leaving the field out keeps it. An unknown
// field or an unknown policy is a *FieldError naming it. changed reports whether the result
// differs from base.
func PatchBackpressure(prefix string, base RequestBackpressureSettings, patch json.RawMessage) (RequestBackpressureSettings, bool, error) {
	out := base
	fields := []field{{name: "policy", set: func(path string, raw json.RawMessage) error {
		v, err := decodeValue(raw)
		if err != nil {
			return fieldErr(path, "is not valid JSON: %v", err)
		}
		if v == nil {
			out.Policy = nil
			return nil
		}
		s, ok := v.(string)
		p := BackpressurePolicy(s)
		if !ok || !p.Valid() {
			return fieldErr(path, "must be one of %s, or null for none; got %s", joinValues(BackpressurePolicies()), describe(v))
		}
		out.Policy = &p
		return nil
	}, takesNull: true}}
	if err := applyObject(prefix, patch, fields); err != nil {
		return base, false, err
	}
	return out, !out.Equal(base), nil
}

// describe shows a decoded JSON value in an error message: a string quoted, anything else
// by its kind.
func describe(v any) string {
	if s, ok := v.(string); ok {
		b, _ := json.Marshal(s)
		return string(b)
	}
	return kindOf(v)
}
