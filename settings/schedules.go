package settings

import (
	"encoding/json"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"time"
	// Timezones are checked against the IANA database built into the binary, so a host
	// without /usr/share/zoneinfo accepts the same names.
	_ "time/tzdata"
)

// ScheduleCadence is how often an autoscaling schedule's window comes round (Baseten's
// AutoscalingScheduleCadenceV1).
type ScheduleCadence string

// The cadences a schedule can be created with.
const (
	// CadenceDaily opens the window once on each of the schedule's weekdays.
	CadenceDaily ScheduleCadence = "DAILY"
	// CadenceHourly opens the minute window every hour of the schedule's weekdays (between
	// start_hour and end_hour when they are set).
	CadenceHourly ScheduleCadence = "HOURLY"
)

// ScheduleCadences are every cadence, in the spec's order.
func ScheduleCadences() []ScheduleCadence { return []ScheduleCadence{CadenceDaily, CadenceHourly} }

// Weekday is a day a schedule runs on (Baseten's AutoscalingScheduleWeekdayV1).
type Weekday string

// Weekdays are every weekday, in the spec's order.
func Weekdays() []Weekday {
	return []Weekday{"SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"}
}

// ScheduleAutoscalingSettings are a schedule's overrides of the environment's autoscaling
// settings during its window (Baseten's AutoscalingScheduleSettingsV1): the replica bounds
// always, every other field only when set (nil follows the environment's value).
type ScheduleAutoscalingSettings struct {
	MinReplica                  int  `json:"min_replica"`
	MaxReplica                  int  `json:"max_replica"`
	AutoscalingWindow           *int `json:"autoscaling_window"`
	ScaleDownDelay              *int `json:"scale_down_delay"`
	ConcurrencyTarget           *int `json:"concurrency_target"`
	TargetUtilizationPercentage *int `json:"target_utilization_percentage"`
	TargetInFlightTokens        *int `json:"target_in_flight_tokens"`
	MaxScaleDownRate            *int `json:"max_scale_down_rate"`
}

// AutoscalingSchedule is one recurring schedule (Baseten's AutoscalingScheduleV1). Hours and
// minutes are in the collection's timezone; nil hours leave an HOURLY schedule unrestricted.
type AutoscalingSchedule struct {
	ID                  string                      `json:"id"`
	Name                string                      `json:"name"`
	Enabled             bool                        `json:"enabled"`
	Cadence             ScheduleCadence             `json:"cadence"`
	Weekdays            []Weekday                   `json:"weekdays"`
	StartHour           *int                        `json:"start_hour"`
	StartMinute         int                         `json:"start_minute"`
	EndHour             *int                        `json:"end_hour"`
	EndMinute           int                         `json:"end_minute"`
	AutoscalingSettings ScheduleAutoscalingSettings `json:"autoscaling_settings"`
}

// AutoscalingSchedules are an environment's schedules, which share one IANA timezone. The
// autoscaler applies them to the deployment the environment serves (ScheduleInForce,
// docs/API.md).
type AutoscalingSchedules struct {
	// Timezone is nil while there are no schedules.
	Timezone *string `json:"timezone"`
	// Schedules are in the order they were created.
	Schedules []AutoscalingSchedule `json:"schedules"`
}

// Equal reports whether s and o hold the same schedules and timezone.
func (s AutoscalingSchedules) Equal(o AutoscalingSchedules) bool {
	if len(s.Schedules) == 0 && len(o.Schedules) == 0 {
		return reflect.DeepEqual(s.Timezone, o.Timezone)
	}
	return reflect.DeepEqual(s, o)
}

// PatchSchedules applies patch, Baseten's UpdateAutoscalingScheduleSettingsV1, onto base:
// delete_schedules removes schedules by ID, then each of schedules replaces the one with
// its id or, without an id, is added with an ID from newID; timezone replaces the shared
// timezone (left out keeps it, null clears it, which only a collection without schedules
// may). Schedules the patch does not name are unchanged. A null patch changes nothing. Every
// mistake is a *FieldError naming the field, e.g.
// "autoscaling_schedule_settings.schedules[0].weekdays[1]".
func PatchSchedules(prefix string, base AutoscalingSchedules, patch json.RawMessage, newID func() string) (AutoscalingSchedules, bool, error) {
	obj, err := objectFields(prefix, patch, []string{"timezone", "schedules", "delete_schedules"})
	if err != nil || obj == nil {
		return base, false, err
	}
	out := AutoscalingSchedules{Timezone: base.Timezone, Schedules: slices.Clone(base.Schedules)}
	if raw, ok := obj["delete_schedules"]; ok && !IsNull(raw) {
		path := join(prefix, "delete_schedules")
		var ids []string
		if err := json.Unmarshal(raw, &ids); err != nil {
			return base, false, fieldErr(path, "must be an array of schedule IDs (strings)")
		}
		for i, id := range ids {
			at := slices.IndexFunc(out.Schedules, func(s AutoscalingSchedule) bool { return s.ID == id })
			if at < 0 {
				return base, false, fieldErr(fmt.Sprintf("%s[%d]", path, i), "no schedule has ID %q", id)
			}
			out.Schedules = slices.Delete(out.Schedules, at, at+1)
		}
	}
	if raw, ok := obj["schedules"]; ok && !IsNull(raw) {
		path := join(prefix, "schedules")
		var items []json.RawMessage
		if err := json.Unmarshal(raw, &items); err != nil {
			return base, false, fieldErr(path, "must be an array of schedules")
		}
		for i, item := range items {
			p := fmt.Sprintf("%s[%d]", path, i)
			s, err := parseSchedule(p, item)
			if err != nil {
				return base, false, err
			}
			if s.ID == "" {
				s.ID = newID()
				out.Schedules = append(out.Schedules, s)
				continue
			}
			at := slices.IndexFunc(out.Schedules, func(o AutoscalingSchedule) bool { return o.ID == s.ID })
			if at < 0 {
				return base, false, fieldErr(join(p, "id"), "no schedule has ID %q; leave id out to create one", s.ID)
			}
			out.Schedules[at] = s
		}
	}
	if raw, ok := obj["timezone"]; ok {
		path := join(prefix, "timezone")
		if IsNull(raw) {
			out.Timezone = nil
		} else {
			var tz string
			if err := json.Unmarshal(raw, &tz); err != nil {
				return base, false, fieldErr(path, "must be an IANA timezone name (a string) or null")
			}
			if _, err := time.LoadLocation(tz); err != nil || tz == "" || tz == "Local" {
				return base, false, fieldErr(path, "must be an IANA timezone name such as America/Los_Angeles, got %q", tz)
			}
			out.Timezone = &tz
		}
	}
	if len(out.Schedules) == 0 {
		// The spec answers no timezone while there are no schedules.
		out.Timezone, out.Schedules = nil, nil
	} else if out.Timezone == nil {
		return base, false, fieldErr(join(prefix, "timezone"), "required while the environment has schedules")
	}
	return out, !out.Equal(base), nil
}

// parseSchedule reads one AutoscalingScheduleUpsertV1: a complete schedule.
func parseSchedule(path string, raw json.RawMessage) (AutoscalingSchedule, error) {
	var s AutoscalingSchedule
	obj, err := objectFields(path, raw, []string{"id", "name", "enabled", "cadence", "weekdays", "start_hour",
		"start_minute", "end_hour", "end_minute", "autoscaling_settings"})
	if err != nil {
		return s, err
	}
	if obj == nil {
		return s, fieldErr(path, "must be a schedule object, got null")
	}
	for _, k := range []string{"name", "enabled", "cadence", "weekdays", "start_minute", "end_minute", "autoscaling_settings"} {
		if raw, ok := obj[k]; !ok || IsNull(raw) {
			return s, fieldErr(join(path, k), "required")
		}
	}
	var cadence string
	steps := []struct {
		name string
		set  func(string, json.RawMessage) error
	}{
		{"name", typedField(&s.Name, "a string")},
		{"enabled", boolField(&s.Enabled)},
		{"cadence", typedField(&cadence, "a string")},
		{"start_minute", intField(&s.StartMinute)},
		{"end_minute", intField(&s.EndMinute)},
	}
	for _, st := range steps {
		if err := st.set(join(path, st.name), obj[st.name]); err != nil {
			return s, err
		}
	}
	if raw, ok := obj["id"]; ok && !IsNull(raw) {
		if err := typedField(&s.ID, "a string or null")(join(path, "id"), raw); err != nil {
			return s, err
		}
		if s.ID == "" {
			return s, fieldErr(join(path, "id"), "must not be empty; leave it out to create a schedule")
		}
	}
	if strings.TrimSpace(s.Name) == "" {
		return s, fieldErr(join(path, "name"), "must not be empty")
	}
	s.Cadence = ScheduleCadence(cadence)
	if !slices.Contains(ScheduleCadences(), s.Cadence) {
		return s, fieldErr(join(path, "cadence"), "must be one of %s, got %q", joinValues(ScheduleCadences()), cadence)
	}
	if s.Weekdays, err = parseWeekdays(join(path, "weekdays"), obj["weekdays"]); err != nil {
		return s, err
	}
	for _, h := range []struct {
		name string
		dst  **int
	}{{"start_hour", &s.StartHour}, {"end_hour", &s.EndHour}} {
		if s.Cadence == CadenceDaily && (obj[h.name] == nil || IsNull(obj[h.name])) {
			return s, fieldErr(join(path, h.name), "required for a DAILY schedule")
		}
		if *h.dst, err = optionalInt(join(path, h.name), obj[h.name]); err != nil {
			return s, err
		}
		if v := *h.dst; v != nil && (*v < 0 || *v > 23) {
			return s, fieldErr(join(path, h.name), "must be between 0 and 23, got %d", *v)
		}
	}
	if (s.StartHour == nil) != (s.EndHour == nil) {
		return s, fieldErr(join(path, "end_hour"), "start_hour and end_hour are set together or not at all")
	}
	for _, m := range []struct {
		name string
		v    int
	}{{"start_minute", s.StartMinute}, {"end_minute", s.EndMinute}} {
		if err := intRange(join(path, m.name), m.v, 0, 59, ""); err != nil {
			return s, err
		}
	}
	s.AutoscalingSettings, err = parseScheduleSettings(join(path, "autoscaling_settings"), obj["autoscaling_settings"])
	return s, err
}

func parseWeekdays(path string, raw json.RawMessage) ([]Weekday, error) {
	var days []json.RawMessage
	if err := json.Unmarshal(raw, &days); err != nil {
		return nil, fieldErr(path, "must be an array of weekdays (%s)", joinValues(Weekdays()))
	}
	if len(days) == 0 {
		return nil, fieldErr(path, "must name at least one weekday")
	}
	out := make([]Weekday, 0, len(days))
	for i, d := range days {
		var s string
		if json.Unmarshal(d, &s) != nil || !slices.Contains(Weekdays(), Weekday(s)) {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", path, i), "must be one of %s", joinValues(Weekdays()))
		}
		if slices.Contains(out, Weekday(s)) {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", path, i), "%s is named twice", s)
		}
		out = append(out, Weekday(s))
	}
	return out, nil
}

// parseScheduleSettings reads AutoscalingScheduleSettingsRequestV1: every field must be
// there; null for an override stores none.
func parseScheduleSettings(path string, raw json.RawMessage) (ScheduleAutoscalingSettings, error) {
	var s ScheduleAutoscalingSettings
	overrides := []struct {
		name   string
		dst    **int
		lo, hi int
	}{
		{"autoscaling_window", &s.AutoscalingWindow, MinAutoscalingWindow, MaxAutoscalingWindow},
		{"scale_down_delay", &s.ScaleDownDelay, MinScaleDownDelay, MaxScaleDownDelay},
		{"concurrency_target", &s.ConcurrencyTarget, MinConcurrencyTarget, MaxConcurrencyTarget},
		{"target_utilization_percentage", &s.TargetUtilizationPercentage, MinTargetUtilization, MaxTargetUtilization},
		{"target_in_flight_tokens", &s.TargetInFlightTokens, MinTargetInFlightTokens, 1<<31 - 1},
		{"max_scale_down_rate", &s.MaxScaleDownRate, MinMaxScaleDownRate, MaxMaxScaleDownRate},
	}
	known := []string{"min_replica", "max_replica"}
	for _, o := range overrides {
		known = append(known, o.name)
	}
	obj, err := objectFields(path, raw, known)
	if err != nil {
		return s, err
	}
	for _, k := range known {
		if _, ok := obj[k]; !ok {
			return s, fieldErr(join(path, k), "required (null stores no override for the nullable fields)")
		}
	}
	for _, r := range []struct {
		name string
		dst  *int
	}{{"min_replica", &s.MinReplica}, {"max_replica", &s.MaxReplica}} {
		if IsNull(obj[r.name]) {
			return s, fieldErr(join(path, r.name), "must be an integer, not null")
		}
		if err := intField(r.dst)(join(path, r.name), obj[r.name]); err != nil {
			return s, err
		}
	}
	switch {
	case s.MinReplica < 0:
		return s, fieldErr(join(path, "min_replica"), "must be >= 0, got %d", s.MinReplica)
	case s.MaxReplica < 1 || s.MaxReplica < s.MinReplica:
		return s, fieldErr(join(path, "max_replica"), "must be >= 1 and >= min_replica (%d), got %d", s.MinReplica, s.MaxReplica)
	}
	for _, o := range overrides {
		p := join(path, o.name)
		if *o.dst, err = optionalInt(p, obj[o.name]); err != nil {
			return s, err
		}
		if v := *o.dst; v != nil {
			if err := intRange(p, *v, o.lo, o.hi, ""); err != nil {
				return s, err
			}
		}
	}
	return s, nil
}

// optionalInt reads a nullable integer; nil when raw is null or missing.
func optionalInt(path string, raw json.RawMessage) (*int, error) {
	if raw == nil || IsNull(raw) {
		return nil, nil
	}
	var v int
	if err := intField(&v)(path, raw); err != nil {
		return nil, err
	}
	return &v, nil
}

// objectFields reads raw as a JSON object of the known keys, refusing any other (the first
// in sorted order) with a *FieldError naming it; a null raw is a nil map.
func objectFields(path string, raw json.RawMessage, known []string) (map[string]json.RawMessage, error) {
	var fields []field
	obj := map[string]json.RawMessage{}
	for _, k := range known {
		fields = append(fields, field{name: k, takesNull: true, set: func(_ string, v json.RawMessage) error {
			obj[k] = v
			return nil
		}})
	}
	if len(raw) > 0 && IsNull(raw) {
		return nil, nil
	}
	if err := applyObject(path, raw, fields); err != nil {
		return nil, err
	}
	return obj, nil
}
