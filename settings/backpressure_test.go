package settings

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPatchBackpressure_SetsClearsAndKeeps(t *testing.T) {
	queue, reject := BackpressureQueueOnFull, BackpressureRejectOnFull
	none := RequestBackpressureSettings{}
	for _, tt := range []struct {
		name    string
		base    RequestBackpressureSettings
		patch   string
		want    BackpressurePolicy
		changed bool
	}{
		{"set", none, `{"policy": "REJECT_ON_FULL"}`, reject, true},
		{"replace", RequestBackpressureSettings{Policy: &reject}, `{"policy": "QUEUE_ON_FULL"}`, queue, true},
		{"null clears", RequestBackpressureSettings{Policy: &queue}, `{"policy": null}`, "", true},
		{"left out keeps", RequestBackpressureSettings{Policy: &queue}, `{}`, queue, false},
		{"same is unchanged", RequestBackpressureSettings{Policy: &queue}, `{"policy": "QUEUE_ON_FULL"}`, queue, false},
		{"null on none is unchanged", none, `{"policy": null}`, "", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, changed, err := PatchBackpressure("", tt.base, json.RawMessage(tt.patch))
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.PolicyOrNone())
			assert.Equal(t, tt.changed, changed)
		})
	}
}

func TestPatchBackpressure_RefusesWhatItDoesNotKnow(t *testing.T) {
	for _, tt := range []struct{ patch, field, want string }{
		{`{"policy": "DROP"}`, "request_backpressure_settings.policy", `must be one of QUEUE_ON_FULL, REJECT_ON_FULL, or null for none; got "DROP"`},
		{`{"policy": 3}`, "request_backpressure_settings.policy", "got a number"},
		{`{"max_queue": 3}`, "request_backpressure_settings.max_queue", "unknown field; known fields are policy"},
		{`[]`, "request_backpressure_settings", "must be a JSON object"},
	} {
		_, _, err := PatchBackpressure("request_backpressure_settings", RequestBackpressureSettings{}, json.RawMessage(tt.patch))
		requireFieldError(t, err, tt.field, tt.want)
	}
}

func TestRequestBackpressureSettings_ColumnRoundTripsAndForgetsUnknownPolicies(t *testing.T) {
	reject := BackpressureRejectOnFull
	v, err := RequestBackpressureSettings{Policy: &reject}.Value()
	require.NoError(t, err)
	var got RequestBackpressureSettings
	require.NoError(t, got.Scan(v))
	assert.Equal(t, reject, got.PolicyOrNone())

	require.NoError(t, got.Scan([]byte(`{}`)))
	assert.Nil(t, got.Policy, "the column default {} is no policy")
	require.NoError(t, got.Scan([]byte(`{"policy": "SOMETHING_NEWER"}`)))
	assert.Nil(t, got.Policy, "a policy this release does not know reads as none")

	b, err := json.Marshal(RequestBackpressureSettings{})
	require.NoError(t, err)
	assert.JSONEq(t, `{"policy": null}`, string(b), "no policy is sent as null, as the spec has it")
}
