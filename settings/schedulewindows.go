package settings

import (
	"slices"
	"sync"
	"time"
)

// The lead time a schedule is applied with: a deployment is brought to a schedule's settings
// this long before its window opens, so that its replicas are READY when it does.
const (
	// DefaultScheduleLead is the lead time of a deployment whose cold start was never
	// measured: neither it nor another deployment of its model has had a replica READY.
	DefaultScheduleLead = 60 * time.Second
	// MaxScheduleLead bounds a measured lead time, so that a replica that waited long for a
	// node with room does not make a schedule apply hours early.
	MaxScheduleLead = 30 * time.Minute
)

// ScheduleLead is the lead time for a deployment whose replicas took the given times from
// creation to READY (newest first, any order): their median, within MaxScheduleLead, or
// DefaultScheduleLead when there are none.
func ScheduleLead(coldStarts []time.Duration) time.Duration {
	if len(coldStarts) == 0 {
		return DefaultScheduleLead
	}
	s := slices.Clone(coldStarts)
	slices.Sort(s)
	median := s[len(s)/2]
	if len(s)%2 == 0 {
		median = (s[len(s)/2-1] + median) / 2
	}
	return min(max(median, 0), MaxScheduleLead)
}

// minutesPerWeek is the length of the week, whose wall-clock minutes, counted from Sunday
// 00:00, place a schedule's windows.
const minutesPerWeek = 7 * 24 * 60

// scheduleWindow is one of a schedule's windows in wall-clock minutes of the week: open from
// start until just before end. start is within the week; end may be past it (into Sunday).
type scheduleWindow struct{ start, end int }

// windows returns the schedule's windows; each of its weekdays has the same, each window
// belonging to the weekday it opens on. A DAILY schedule has one a day, from
// start_hour:start_minute to end_hour:end_minute, ending the next day when the end is not
// after the start (an end equal to the start makes a whole day). An HOURLY schedule has one
// every hour from start_hour to end_hour (both included; every hour of the day when they are
// unset; past midnight into the next day when end_hour is before start_hour), from minute
// start_minute to end_minute, ending in the next hour when end_minute is not after
// start_minute.
func (s AutoscalingSchedule) windows() []scheduleWindow {
	var out []scheduleWindow
	for _, wd := range s.Weekdays {
		i := slices.Index(Weekdays(), wd)
		if i < 0 {
			continue
		}
		day := i * 24 * 60
		switch s.Cadence {
		case CadenceDaily:
			if s.StartHour == nil || s.EndHour == nil {
				continue
			}
			start, end := *s.StartHour*60+s.StartMinute, *s.EndHour*60+s.EndMinute
			if end <= start {
				end += 24 * 60
			}
			out = append(out, scheduleWindow{day + start, day + end})
		case CadenceHourly:
			first, last := 0, 23
			if s.StartHour != nil && s.EndHour != nil {
				first, last = *s.StartHour, *s.EndHour
				if last < first {
					last += 24
				}
			}
			length := s.EndMinute - s.StartMinute
			if length <= 0 {
				length += 60
			}
			for h := first; h <= last; h++ {
				start := (day + h*60 + s.StartMinute) % minutesPerWeek
				out = append(out, scheduleWindow{start, start + length})
			}
		}
	}
	return out
}

// wallMinute is t's wall-clock time in loc as minutes of the week (from Sunday 00:00), and
// how far into that minute t is.
func wallMinute(t time.Time, loc *time.Location) (int, time.Duration) {
	l := t.In(loc)
	m := int(l.Weekday())*24*60 + l.Hour()*60 + l.Minute()
	return m, time.Duration(l.Second())*time.Second + time.Duration(l.Nanosecond())
}

// openAt reports whether wall-clock minute m falls in one of ws.
func openAt(ws []scheduleWindow, m int) bool {
	for _, w := range ws {
		// A window is shorter than a week, so it holds m or m a week on, or neither.
		if w.start <= m && m < w.end || w.start <= m+minutesPerWeek && m+minutesPerWeek < w.end {
			return true
		}
	}
	return false
}

// OpenAt reports whether one of the schedule's windows is open at t, as the wall clock in
// loc reads: across a clock change a window follows the clock, so it is open for every
// instant whose local time falls in it (twice in an hour the clocks repeat, never in one they
// skip). A disabled schedule is never open.
func (s AutoscalingSchedule) OpenAt(t time.Time, loc *time.Location) bool {
	if !s.Enabled {
		return false
	}
	m, _ := wallMinute(t, loc)
	return openAt(s.windows(), m)
}

// NextOpening returns the first instant after t at which the schedule goes from closed to
// open, as the wall clock in loc reads (OpenAt): where the clock reaches the start of a
// window, or jumps forward into one. false for a disabled schedule.
func (s AutoscalingSchedule) NextOpening(t time.Time, loc *time.Location) (time.Time, bool) {
	ws := s.windows()
	if !s.Enabled || len(ws) == 0 {
		return time.Time{}, false
	}
	cur := t
	// Each round either finds the opening or moves to the next clock change, and a week holds
	// a window start; a few rounds are enough for any real timezone.
	for range 8 {
		m, into := wallMinute(cur, loc)
		// The nearest window start at or after cur, counted in whole wall-clock minutes from
		// the start of cur's minute, and after t.
		first := 1
		if into == 0 && cur.After(t) {
			first = 0
		}
		k := -1
		for _, w := range ws {
			d := ((w.start-m)%minutesPerWeek + minutesPerWeek) % minutesPerWeek
			if d < first {
				d += minutesPerWeek
			}
			if k < 0 || d < k {
				k = d
			}
		}
		at := cur.Add(-into).Add(time.Duration(k) * time.Minute)
		// Until the zone's offset changes, wall-clock minutes are minutes.
		_, change := cur.In(loc).ZoneBounds()
		if change.IsZero() || at.Before(change) {
			return at, true
		}
		if change.After(t) && s.OpenAt(change, loc) && !s.OpenAt(change.Add(-time.Nanosecond), loc) {
			return change, true // the clock jumped forward into a window
		}
		cur = change
	}
	return time.Time{}, false
}

// Applies reports whether the schedule's settings apply at now for a deployment that takes
// lead to bring a replica up: its window is open, or opens within lead.
func (s AutoscalingSchedule) Applies(now time.Time, loc *time.Location, lead time.Duration) bool {
	if s.OpenAt(now, loc) {
		return true
	}
	next, ok := s.NextOpening(now, loc)
	return ok && !next.After(now.Add(lead))
}

// ScheduleInForce returns the schedule whose settings apply at now to a deployment that the
// environments holding collections serve and that takes lead to bring a replica up, or nil
// when none does (the deployment's own settings apply). Of several that apply, the one with
// the largest min_replica wins, and of those the first in order: collections in the order
// given, schedules in each in theirs. A collection whose timezone cannot be read applies
// nothing.
func ScheduleInForce(now time.Time, lead time.Duration, collections ...AutoscalingSchedules) *AutoscalingSchedule {
	var best *AutoscalingSchedule
	for _, c := range collections {
		if c.Timezone == nil {
			continue
		}
		loc, err := loadLocation(*c.Timezone)
		if err != nil {
			continue
		}
		for i := range c.Schedules {
			s := &c.Schedules[i]
			if s.Applies(now, loc, lead) && (best == nil || s.AutoscalingSettings.MinReplica > best.AutoscalingSettings.MinReplica) {
				best = s
			}
		}
	}
	return best
}

// locations caches the timezones ScheduleInForce reads, by name: the autoscaler asks every
// tick, and time.LoadLocation reads and parses the zone's file each time.
var locations sync.Map

func loadLocation(name string) (*time.Location, error) {
	if loc, ok := locations.Load(name); ok {
		return loc.(*time.Location), nil
	}
	loc, err := time.LoadLocation(name)
	if err != nil {
		return nil, err
	}
	locations.Store(name, loc)
	return loc, nil
}

// Applied returns the settings in force on a deployment whose own are base while schedule is
// in force on it: base with the schedule's in place (Over), or base when schedule is nil.
func Applied(base AutoscalingSettings, schedule *AutoscalingSchedule) AutoscalingSettings {
	if schedule == nil {
		return base
	}
	return schedule.AutoscalingSettings.Over(base)
}

// Over returns base with the schedule's settings in place of its own: the replica bounds
// always, every other field where the schedule sets it.
func (s ScheduleAutoscalingSettings) Over(base AutoscalingSettings) AutoscalingSettings {
	out := base
	out.MinReplica, out.MaxReplica = s.MinReplica, s.MaxReplica
	for _, f := range []struct {
		from *int
		to   *int
	}{
		{s.AutoscalingWindow, &out.AutoscalingWindow},
		{s.ScaleDownDelay, &out.ScaleDownDelay},
		{s.ConcurrencyTarget, &out.ConcurrencyTarget},
		{s.TargetUtilizationPercentage, &out.TargetUtilizationPercentage},
		{s.MaxScaleDownRate, &out.MaxScaleDownRate},
	} {
		if f.from != nil {
			*f.to = *f.from
		}
	}
	if s.TargetInFlightTokens != nil {
		out.TargetInFlightTokens = SomeInt(*s.TargetInFlightTokens)
	}
	return out
}
