package settings

import (
	"encoding/json"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// weekdayPeak is the spec's example schedule.
const weekdayPeak = `{"autoscaling_settings": {"autoscaling_window": null, "concurrency_target": null, "max_replica": 8,
	"max_scale_down_rate": null, "min_replica": 2, "scale_down_delay": null, "target_in_flight_tokens": null,
	"target_utilization_percentage": null}, "cadence": "DAILY", "enabled": true, "end_hour": 10, "end_minute": 0,
	"name": "weekday-peak", "start_hour": 8, "start_minute": 0,
	"weekdays": ["MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"]}`

func counter() func() string {
	n := 0
	return func() string { n++; return fmt.Sprintf("s%d", n) }
}

func TestPatchSchedules_SpecExampleIsKept(t *testing.T) {
	got, changed, err := PatchSchedules("autoscaling_schedule_settings", AutoscalingSchedules{},
		json.RawMessage(`{"schedules": [`+weekdayPeak+`], "timezone": "America/Los_Angeles"}`), counter())
	require.NoError(t, err)
	assert.True(t, changed)
	require.NotNil(t, got.Timezone)
	assert.Equal(t, "America/Los_Angeles", *got.Timezone)
	require.Len(t, got.Schedules, 1)
	s := got.Schedules[0]
	assert.Equal(t, "s1", s.ID, "a schedule without an id gets a new one")
	assert.Equal(t, "weekday-peak", s.Name)
	assert.Equal(t, CadenceDaily, s.Cadence)
	assert.Equal(t, []Weekday{"MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"}, s.Weekdays)
	require.NotNil(t, s.StartHour)
	assert.Equal(t, 8, *s.StartHour)
	assert.Equal(t, 2, s.AutoscalingSettings.MinReplica)
	assert.Equal(t, 8, s.AutoscalingSettings.MaxReplica)
	assert.Nil(t, s.AutoscalingSettings.ConcurrencyTarget, "null stores no override")

	// The stored form reads back the same.
	b, err := json.Marshal(got)
	require.NoError(t, err)
	var back AutoscalingSchedules
	require.NoError(t, back.Scan(b))
	assert.True(t, back.Equal(got), "stored %s", b)
}

func TestPatchSchedules_ReplaceDeleteAndKeep(t *testing.T) {
	ids := counter()
	base, _, err := PatchSchedules("p", AutoscalingSchedules{}, json.RawMessage(`{"timezone": "UTC", "schedules": [`+
		weekdayPeak+`, `+weekdayPeak+`]}`), ids)
	require.NoError(t, err)
	require.Len(t, base.Schedules, 2)

	// Leaving everything out, or sending null, changes nothing.
	for _, patch := range []string{`{}`, `null`, `{"timezone": "UTC"}`, `{"schedules": null, "delete_schedules": null}`} {
		got, changed, err := PatchSchedules("p", base, json.RawMessage(patch), ids)
		require.NoError(t, err, patch)
		assert.False(t, changed, patch)
		assert.True(t, got.Equal(base), patch)
	}

	// A schedule with an id replaces that one; the other is unchanged.
	replaced := `{"id": "s2", "name": "night", "enabled": false, "cadence": "HOURLY", "weekdays": ["SUNDAY"],
		"start_minute": 0, "end_minute": 30, "autoscaling_settings": {"min_replica": 0, "max_replica": 1,
		"autoscaling_window": 60, "scale_down_delay": null, "concurrency_target": null, "target_utilization_percentage": null,
		"target_in_flight_tokens": 100, "max_scale_down_rate": null}}`
	got, changed, err := PatchSchedules("p", base, json.RawMessage(`{"schedules": [`+replaced+`]}`), ids)
	require.NoError(t, err)
	assert.True(t, changed)
	require.Len(t, got.Schedules, 2)
	assert.Equal(t, base.Schedules[0], got.Schedules[0])
	assert.Equal(t, "night", got.Schedules[1].Name)
	assert.Nil(t, got.Schedules[1].StartHour, "an HOURLY schedule may leave its hours out")
	assert.Equal(t, 100, *got.Schedules[1].AutoscalingSettings.TargetInFlightTokens)
	assert.Equal(t, "weekday-peak", base.Schedules[1].Name, "the base is not modified")

	// Deleting every schedule clears the timezone as well.
	got, changed, err = PatchSchedules("p", base, json.RawMessage(`{"delete_schedules": ["s1", "s2"]}`), ids)
	require.NoError(t, err)
	assert.True(t, changed)
	assert.Empty(t, got.Schedules)
	assert.Nil(t, got.Timezone)
}

func TestPatchSchedules_RefusesWrongShapesNamingTheField(t *testing.T) {
	base, _, err := PatchSchedules("p", AutoscalingSchedules{},
		json.RawMessage(`{"timezone": "UTC", "schedules": [`+weekdayPeak+`]}`), counter())
	require.NoError(t, err)
	// with returns the example schedule with one field replaced (or removed, for "-").
	with := func(key, value string) string {
		var obj map[string]json.RawMessage
		require.NoError(t, json.Unmarshal([]byte(weekdayPeak), &obj))
		if value == "-" {
			delete(obj, key)
		} else {
			obj[key] = json.RawMessage(value)
		}
		b, err := json.Marshal(obj)
		require.NoError(t, err)
		return `{"schedules": [` + string(b) + `]}`
	}
	for _, tc := range []struct {
		patch, field, message string
	}{
		{`{"timezone": "Mars/Olympus"}`, "p.timezone", "IANA timezone"},
		{`{"timezone": 5}`, "p.timezone", "IANA timezone"},
		{`{"timezone": null}`, "p.timezone", "required while the environment has schedules"},
		{`{"schedules": {}}`, "p.schedules", "must be an array"},
		{`{"schedules": [null]}`, "p.schedules[0]", "got null"},
		{`{"delete_schedules": ["nope"]}`, "p.delete_schedules[0]", `no schedule has ID "nope"`},
		{`{"delete_schedules": "s1"}`, "p.delete_schedules", "must be an array"},
		{`{"zones": []}`, "p.zones", "unknown field"},
		{with("name", "-"), "p.schedules[0].name", "required"},
		{with("name", `""`), "p.schedules[0].name", "must not be empty"},
		{with("enabled", `"yes"`), "p.schedules[0].enabled", "must be true or false"},
		{with("cadence", `"WEEKLY"`), "p.schedules[0].cadence", "must be one of DAILY, HOURLY"},
		{with("weekdays", `["MON"]`), "p.schedules[0].weekdays[0]", "must be one of SUNDAY"},
		{with("weekdays", `[]`), "p.schedules[0].weekdays", "at least one"},
		{with("weekdays", `["MONDAY", "MONDAY"]`), "p.schedules[0].weekdays[1]", "named twice"},
		{with("start_hour", `24`), "p.schedules[0].start_hour", "between 0 and 23"},
		{with("start_hour", `null`), "p.schedules[0].start_hour", "required for a DAILY schedule"},
		{with("end_minute", `60`), "p.schedules[0].end_minute", "between 0 and 59"},
		{with("id", `"zzz"`), "p.schedules[0].id", `no schedule has ID "zzz"`},
		{with("id", `7`), "p.schedules[0].id", "must be a string or null"},
		{with("color", `"red"`), "p.schedules[0].color", "unknown field"},
		{with("autoscaling_settings", `{"min_replica": 1, "max_replica": 2}`), "p.schedules[0].autoscaling_settings.autoscaling_window", "required"},
		{with("autoscaling_settings", `{"min_replica": 3, "max_replica": 2, "autoscaling_window": null, "scale_down_delay": null,
			"concurrency_target": null, "target_utilization_percentage": null, "target_in_flight_tokens": null,
			"max_scale_down_rate": null}`), "p.schedules[0].autoscaling_settings.max_replica", ">= min_replica"},
		{with("autoscaling_settings", `{"min_replica": 1, "max_replica": 2, "autoscaling_window": null, "scale_down_delay": null,
			"concurrency_target": null, "target_utilization_percentage": null, "target_in_flight_tokens": null,
			"max_scale_down_rate": 51}`), "p.schedules[0].autoscaling_settings.max_scale_down_rate", "between 1 and 50"},
		{with("autoscaling_settings", `{"min_replica": null, "max_replica": 2, "autoscaling_window": null, "scale_down_delay": null,
			"concurrency_target": null, "target_utilization_percentage": null, "target_in_flight_tokens": null,
			"max_scale_down_rate": null}`), "p.schedules[0].autoscaling_settings.min_replica", "not null"},
	} {
		t.Run(tc.field+" "+tc.message, func(t *testing.T) {
			got, changed, err := PatchSchedules("p", base, json.RawMessage(tc.patch), counter())
			requireFieldError(t, err, tc.field, tc.message)
			assert.False(t, changed)
			assert.True(t, got.Equal(base), "on error the base comes back")
		})
	}
}

func TestOptionalInt_JSON(t *testing.T) {
	var s AutoscalingSettings
	require.NoError(t, json.Unmarshal([]byte(`{"target_in_flight_tokens": 7}`), &s))
	v, ok := s.TargetInFlightTokens.Get()
	assert.True(t, ok)
	assert.Equal(t, 7, v)
	b, err := json.Marshal(DefaultAutoscalingSettings())
	require.NoError(t, err)
	assert.Contains(t, string(b), `"target_in_flight_tokens":null`, "unset is null, as the spec has it")
	require.NoError(t, json.Unmarshal([]byte(`{"target_in_flight_tokens": null}`), &s))
	assert.Nil(t, s.TargetInFlightTokens.Ptr())
	assert.Error(t, json.Unmarshal([]byte(`{"target_in_flight_tokens": "x"}`), &s))
}

func TestPromotionSettings_StoredBeforeRollingDeployReadsWithItsDefaults(t *testing.T) {
	var s PromotionSettings
	require.NoError(t, s.Scan([]byte(`{"redeploy_on_promotion": true, "promotion_cleanup_strategy": "KEEP",
		"ramp_up_while_promoting": false, "ramp_up_duration_seconds": 600,
		"canary_analysis": {"enabled": false, "max_error_rate_increase": 0.01, "max_p99_latency_ratio": 1.5, "min_requests_per_stage": 20}}`)))
	assert.Equal(t, DefaultRollingDeployConfig(), s.RollingDeployConfig)
	assert.True(t, s.RedeployOnPromotion)
	require.NoError(t, ValidatePromotion("promotion_settings", s), "a row from before reads as valid settings")
}
