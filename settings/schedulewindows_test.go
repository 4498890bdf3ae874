package settings

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func ptr(v int) *int { return &v }

// daily is an enabled DAILY schedule on days from sh:sm to eh:em, with min and max replicas.
func daily(id string, days []Weekday, sh, sm, eh, em, minR, maxR int) AutoscalingSchedule {
	return AutoscalingSchedule{ID: id, Name: id, Enabled: true, Cadence: CadenceDaily, Weekdays: days,
		StartHour: ptr(sh), StartMinute: sm, EndHour: ptr(eh), EndMinute: em,
		AutoscalingSettings: ScheduleAutoscalingSettings{MinReplica: minR, MaxReplica: maxR}}
}

// hourly is an enabled HOURLY schedule on days from minute sm to em, within hours (nil: every
// hour).
func hourly(days []Weekday, hours *[2]int, sm, em int) AutoscalingSchedule {
	s := AutoscalingSchedule{ID: "h", Name: "h", Enabled: true, Cadence: CadenceHourly, Weekdays: days,
		StartMinute: sm, EndMinute: em, AutoscalingSettings: ScheduleAutoscalingSettings{MinReplica: 1, MaxReplica: 1}}
	if hours != nil {
		s.StartHour, s.EndHour = ptr(hours[0]), ptr(hours[1])
	}
	return s
}

func zone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	require.NoError(t, err)
	return loc
}

// utc is an instant written in UTC, "2025-03-28 07:59".
func utc(t *testing.T, s string) time.Time {
	t.Helper()
	at, err := time.Parse("2006-01-02 15:04", s)
	require.NoError(t, err)
	return at
}

// local is an instant written as the wall clock in loc reads.
func local(t *testing.T, loc *time.Location, s string) time.Time {
	t.Helper()
	at, err := time.ParseInLocation("2006-01-02 15:04", s, loc)
	require.NoError(t, err)
	return at
}

var weekdaysMonFri = []Weekday{"MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"}

func checkOpen(t *testing.T, s AutoscalingSchedule, loc *time.Location, want map[time.Time]bool) {
	t.Helper()
	for at, open := range want {
		assert.Equal(t, open, s.OpenAt(at, loc), "open at %s (%s in %s)", at.UTC().Format(time.DateTime),
			at.In(loc).Format("Mon 15:04 MST"), loc)
	}
}

func TestOpenAt_DailyWindowFollowsTheWallClockAcrossTheSpringChange(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	s := daily("office", weekdaysMonFri, 9, 0, 17, 0, 1, 1)
	// Clocks go from CET (UTC+1) to CEST (UTC+2) on Sunday 2025-03-30.
	checkOpen(t, s, berlin, map[time.Time]bool{
		utc(t, "2025-03-28 07:59"): false, utc(t, "2025-03-28 08:00"): true, // Friday, 09:00 CET
		utc(t, "2025-03-28 15:59"): true, utc(t, "2025-03-28 16:00"): false,
		utc(t, "2025-03-29 12:00"): false, utc(t, "2025-03-29 08:00"): false, // Saturday
		utc(t, "2025-03-31 06:59"): false, utc(t, "2025-03-31 07:00"): true, // Monday, 09:00 CEST
		utc(t, "2025-03-31 14:59"): true, utc(t, "2025-03-31 15:00"): false,
	})
	next, ok := s.NextOpening(utc(t, "2025-03-28 16:00"), berlin)
	require.True(t, ok)
	assert.Equal(t, utc(t, "2025-03-31 07:00"), next.UTC(), "after Friday's window, Monday 09:00 CEST")
	next, _ = s.NextOpening(utc(t, "2025-03-31 06:00"), berlin)
	assert.Equal(t, utc(t, "2025-03-31 07:00"), next.UTC(), "an opening later the same day")
	next, _ = s.NextOpening(utc(t, "2025-03-31 07:00"), berlin)
	assert.Equal(t, utc(t, "2025-04-01 07:00"), next.UTC(), "an opening exactly at t is not after it")
}

func TestOpenAt_WindowPastMidnightBelongsToTheDayItOpensAndLastsWhatTheClockSays(t *testing.T) {
	berlin := zone(t, "Europe/Berlin")
	s := daily("night", []Weekday{"SATURDAY"}, 22, 0, 6, 0, 1, 1)
	checkOpen(t, s, berlin, map[time.Time]bool{
		// The night clocks go forward: 22:00 CET to 06:00 CEST is seven hours.
		utc(t, "2025-03-29 20:59"): false, utc(t, "2025-03-29 21:00"): true,
		utc(t, "2025-03-30 03:59"): true, utc(t, "2025-03-30 04:00"): false,
		// The night they go back: 22:00 CEST to 06:00 CET is nine.
		utc(t, "2025-10-25 19:59"): false, utc(t, "2025-10-25 20:00"): true,
		utc(t, "2025-10-26 04:59"): true, utc(t, "2025-10-26 05:00"): false,
		// Only the night that starts on Saturday.
		local(t, berlin, "2025-03-30 23:00"): false, // Sunday evening
		local(t, berlin, "2025-04-04 23:00"): false, // Friday night
		local(t, berlin, "2025-04-05 02:00"): false, // Saturday, early: Friday's night
		local(t, berlin, "2025-04-06 01:00"): true,  // Sunday, early: Saturday's night
	})
	next, ok := s.NextOpening(utc(t, "2025-03-28 12:00"), berlin)
	require.True(t, ok)
	assert.Equal(t, utc(t, "2025-03-29 21:00"), next.UTC())
}

func TestOpenAt_DailyWindowWhoseEndIsItsStartIsAWholeDay(t *testing.T) {
	s := daily("monday", []Weekday{"MONDAY"}, 0, 0, 0, 0, 1, 1)
	checkOpen(t, s, time.UTC, map[time.Time]bool{
		utc(t, "2025-01-05 23:59"): false, utc(t, "2025-01-06 00:00"): true,
		utc(t, "2025-01-06 23:59"): true, utc(t, "2025-01-07 00:00"): false,
	})
}

func TestOpenAt_HourlyWithoutHoursFollowsTheClockThroughBothChanges(t *testing.T) {
	ny := zone(t, "America/New_York")
	s := hourly([]Weekday{"SUNDAY"}, nil, 15, 45)
	for _, day := range []string{"2025-03-09", "2025-11-02"} { // spring forward, fall back
		from := local(t, ny, day+" 00:00").Add(-6 * time.Hour)
		for at := from; at.Before(from.Add(36 * time.Hour)); at = at.Add(time.Minute) {
			l := at.In(ny)
			want := l.Weekday() == time.Sunday && l.Minute() >= 15 && l.Minute() < 45
			require.Equal(t, want, s.OpenAt(at, ny), "open at %s", l.Format(time.RFC3339))
		}
	}
	// Sunday has a window for each hour the clock shows: 23 the day it skips one, 25 the day
	// it repeats one.
	for day, want := range map[string]int{"2025-03-09": 23, "2025-11-02": 25, "2025-03-16": 24} {
		n := 0
		end := local(t, ny, day+" 00:00").AddDate(0, 0, 1)
		for at, ok := s.NextOpening(local(t, ny, day+" 00:00"), ny); ok && at.Before(end); at, ok = s.NextOpening(at, ny) {
			require.True(t, s.OpenAt(at, ny) && !s.OpenAt(at.Add(-time.Second), ny), "%s is an opening", at.In(ny))
			n++
		}
		assert.Equal(t, want, n, "windows opening on Sunday %s", day)
	}
}

func TestOpenAt_HourlyWithinHours(t *testing.T) {
	s := hourly([]Weekday{"MONDAY"}, &[2]int{9, 17}, 0, 30)
	checkOpen(t, s, time.UTC, map[time.Time]bool{
		utc(t, "2025-01-06 08:10"): false, utc(t, "2025-01-06 09:00"): true, utc(t, "2025-01-06 09:29"): true,
		utc(t, "2025-01-06 09:30"): false, utc(t, "2025-01-06 17:10"): true, utc(t, "2025-01-06 18:10"): false,
		utc(t, "2025-01-07 09:10"): false, // Tuesday
	})
	for after, want := range map[string]string{
		"2025-01-06 09:20": "2025-01-06 10:00",
		"2025-01-06 17:05": "2025-01-13 09:00", // the last hour's window is 17:00; next Monday
		"2025-01-06 08:59": "2025-01-06 09:00",
	} {
		next, ok := s.NextOpening(utc(t, after), time.UTC)
		require.True(t, ok)
		assert.Equal(t, utc(t, want), next, "next opening after %s", after)
	}
}

func TestOpenAt_HourlyPastMidnightAndPastTheHour(t *testing.T) {
	// Monday 22:50 to 23:10, 23:50 to 00:10, ... the last opening at Tuesday 02:50.
	s := hourly([]Weekday{"MONDAY"}, &[2]int{22, 2}, 50, 10)
	checkOpen(t, s, time.UTC, map[time.Time]bool{
		utc(t, "2025-01-06 22:45"): false, utc(t, "2025-01-06 22:55"): true, utc(t, "2025-01-06 23:05"): true,
		utc(t, "2025-01-06 23:15"): false, utc(t, "2025-01-07 00:05"): true, utc(t, "2025-01-07 02:55"): true,
		utc(t, "2025-01-07 03:05"): true, utc(t, "2025-01-07 03:10"): false, utc(t, "2025-01-07 03:55"): false,
		// Monday's early hours are Sunday's, which the schedule does not run on.
		utc(t, "2025-01-06 00:05"): false, utc(t, "2025-01-06 01:55"): false, utc(t, "2025-01-06 02:55"): false,
	})
	next, ok := s.NextOpening(utc(t, "2025-01-07 03:20"), time.UTC)
	require.True(t, ok)
	assert.Equal(t, utc(t, "2025-01-13 22:50"), next)
}

func TestNextOpening_ClockJumpingIntoAWindowOpensIt(t *testing.T) {
	ny := zone(t, "America/New_York")
	// 02:15 to 03:30 on the Sunday the clock goes from 01:59 EST to 03:00 EDT (07:00 UTC).
	s := daily("gap", []Weekday{"SUNDAY"}, 2, 15, 3, 30, 1, 1)
	checkOpen(t, s, ny, map[time.Time]bool{
		utc(t, "2025-03-09 06:59"): false, utc(t, "2025-03-09 07:00"): true,
		utc(t, "2025-03-09 07:29"): true, utc(t, "2025-03-09 07:30"): false,
	})
	next, ok := s.NextOpening(utc(t, "2025-03-09 05:00"), ny)
	require.True(t, ok)
	assert.Equal(t, utc(t, "2025-03-09 07:00"), next.UTC())
	next, _ = s.NextOpening(next, ny)
	assert.Equal(t, utc(t, "2025-03-16 06:15"), next.UTC(), "a week on, 02:15 EDT")
}

func TestNextOpening_WindowInTheRepeatedHourOpensTwice(t *testing.T) {
	ny := zone(t, "America/New_York")
	// 01:15 to 01:45 on the Sunday 01:00 to 02:00 comes twice (EDT, then EST).
	s := daily("twice", []Weekday{"SUNDAY"}, 1, 15, 1, 45, 1, 1)
	next, ok := s.NextOpening(utc(t, "2025-11-02 05:00"), ny)
	require.True(t, ok)
	assert.Equal(t, utc(t, "2025-11-02 05:15"), next.UTC(), "01:15 EDT")
	next, _ = s.NextOpening(next, ny)
	assert.Equal(t, utc(t, "2025-11-02 06:15"), next.UTC(), "01:15 EST")
	checkOpen(t, s, ny, map[time.Time]bool{utc(t, "2025-11-02 05:50"): false, utc(t, "2025-11-02 06:20"): true})
}

func TestOpenAt_DisabledScheduleNeverOpens(t *testing.T) {
	s := daily("off", Weekdays(), 0, 0, 0, 0, 3, 3)
	s.Enabled = false
	assert.False(t, s.OpenAt(utc(t, "2025-01-06 12:00"), time.UTC))
	_, ok := s.NextOpening(utc(t, "2025-01-06 12:00"), time.UTC)
	assert.False(t, ok, "a disabled schedule never opens")
	tz := "UTC"
	assert.Nil(t, ScheduleInForce(utc(t, "2025-01-06 12:00"), time.Hour, AutoscalingSchedules{Timezone: &tz,
		Schedules: []AutoscalingSchedule{s}}))
}

func TestScheduleInForce_OpenOrWithinTheLeadAndTheLargestFloorWins(t *testing.T) {
	tz, ny := "UTC", "America/New_York"
	mon := []Weekday{"MONDAY"}
	day := daily("day", mon, 9, 0, 17, 0, 2, 4)
	noon := daily("noon", mon, 12, 0, 13, 0, 3, 3)
	noonToo := daily("noon-too", mon, 12, 0, 13, 0, 3, 8)
	production := AutoscalingSchedules{Timezone: &tz, Schedules: []AutoscalingSchedule{day, noon, noonToo}}
	// 05:00 to 06:00 in New York is 10:00 to 11:00 UTC in January (EST).
	staging := AutoscalingSchedules{Timezone: &ny, Schedules: []AutoscalingSchedule{daily("early", mon, 5, 0, 6, 0, 5, 5)}}

	idOf := func(s *AutoscalingSchedule) string {
		if s == nil {
			return ""
		}
		return s.ID
	}
	for _, c := range []struct {
		at   string
		lead time.Duration
		in   []AutoscalingSchedules
		want string
	}{
		{"2025-01-06 10:00", time.Minute, []AutoscalingSchedules{production}, "day"},
		{"2025-01-06 12:30", time.Minute, []AutoscalingSchedules{production}, "noon"}, // 3 beats 2; tie: first
		{"2025-01-06 08:59", time.Minute, []AutoscalingSchedules{production}, "day"},  // opens within the lead
		{"2025-01-06 08:58", time.Minute, []AutoscalingSchedules{production}, ""},
		{"2025-01-06 11:59", time.Minute, []AutoscalingSchedules{production}, "noon"},
		{"2025-01-06 17:00", time.Minute, []AutoscalingSchedules{production}, ""},
		{"2025-01-06 10:30", time.Minute, []AutoscalingSchedules{production, staging}, "early"},
		{"2025-01-06 11:30", time.Minute, []AutoscalingSchedules{production, staging}, "day"},
		{"2025-01-06 10:30", time.Minute, []AutoscalingSchedules{{Schedules: production.Schedules}}, ""}, // no timezone
	} {
		got := ScheduleInForce(utc(t, c.at), c.lead, c.in...)
		assert.Equal(t, c.want, idOf(got), "in force at %s with lead %s", c.at, c.lead)
	}
}

func TestScheduleLead_MedianOfTheColdStartsWithinBounds(t *testing.T) {
	s := time.Second
	for _, c := range []struct {
		in   []time.Duration
		want time.Duration
	}{
		{nil, DefaultScheduleLead},
		{[]time.Duration{10 * s}, 10 * s},
		{[]time.Duration{10 * s, 30 * s, 20 * s}, 20 * s},
		{[]time.Duration{40 * s, 10 * s, 20 * s, 30 * s}, 25 * s},
		{[]time.Duration{2 * time.Hour}, MaxScheduleLead},
	} {
		assert.Equal(t, c.want, ScheduleLead(c.in), "lead for cold starts %v", c.in)
	}
}

func TestOver_BoundsAlwaysOtherFieldsWhereSet(t *testing.T) {
	base := DefaultAutoscalingSettings()
	got := ScheduleAutoscalingSettings{MinReplica: 2, MaxReplica: 5, ScaleDownDelay: ptr(60),
		TargetInFlightTokens: ptr(100)}.Over(base)
	want := base
	want.MinReplica, want.MaxReplica, want.ScaleDownDelay, want.TargetInFlightTokens = 2, 5, 60, SomeInt(100)
	assert.Equal(t, want, got)
}
