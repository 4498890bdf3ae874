package autoscaler

import (
	"math"
	"strings"
	"testing"
	"time"

	"github.com/modelplane/modelplane/settings"
)

// tickNow is the tick every case decides at; tickAgo(n) is n seconds before it.
var tickNow = time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)

func tickAgo(s int) time.Time { return tickNow.Add(-time.Duration(s) * time.Second) }

// roundSettings are easy to reason about (one replica per unit of concurrency, a 60s window,
// a 900s delay, 50% per step), changed by fn.
func roundSettings(fn func(*settings.AutoscalingSettings)) settings.AutoscalingSettings {
	s := settings.AutoscalingSettings{
		MinReplica:                  0,
		MaxReplica:                  10,
		AutoscalingWindow:           60,
		ScaleDownDelay:              900,
		ConcurrencyTarget:           1,
		TargetUtilizationPercentage: 100,
		MaxScaleDownRate:            50,
	}
	if fn != nil {
		fn(&s)
	}
	return s
}

// flatLoad is n seconds of concurrency c ending at tickNow, newest first, without requests started.
func flatLoad(n int, c float64) []Sample {
	out := make([]Sample, n)
	for i := range out {
		out[i] = Sample{At: tickAgo(i), Concurrency: c}
	}
	return out
}

type decideCase struct {
	name     string
	in       Input
	st       State
	desired  int
	wanted   int
	reason   string    // the reason starts with this; "" is not checked
	lowSince time.Time // State.LowSince after the tick
}

func runDecide(t *testing.T, cases []decideCase) {
	t.Helper()
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.in.Now.IsZero() {
				c.in.Now = tickNow
			}
			st := c.st
			got := Decide(c.in, &st)
			if got.Desired != c.desired || got.Wanted != c.wanted {
				t.Errorf("Decide = desired %d, wanted %d (%q); want desired %d, wanted %d",
					got.Desired, got.Wanted, got.Reason, c.desired, c.wanted)
			}
			if !strings.HasPrefix(got.Reason, c.reason) {
				t.Errorf("reason = %q, want it to start with %q", got.Reason, c.reason)
			}
			if !st.LowSince.Equal(c.lowSince) {
				t.Errorf("LowSince after = %v, want %v", st.LowSince, c.lowSince)
			}
		})
	}
}

func TestDecide_AveragesOverTheWholeWindow(t *testing.T) {
	in := func(current int, samples []Sample) Input {
		return Input{Current: current, Settings: roundSettings(nil), Samples: samples}
	}
	runDecide(t, []decideCase{
		{name: "full window", in: in(2, flatLoad(60, 2)), desired: 2, wanted: 2, reason: "steady"},
		{name: "gaps count as zero", in: in(1, flatLoad(30, 2)), desired: 1, wanted: 1},
		{name: "one busy second in a quiet minute", in: in(1, flatLoad(1, 60)), desired: 1, wanted: 1},
		{name: "unsorted", in: in(3, []Sample{
			{At: tickAgo(59), Concurrency: 60}, {At: tickAgo(0), Concurrency: 60}, {At: tickAgo(30), Concurrency: 60},
		}), desired: 3, wanted: 3},
		{name: "samples before the window are ignored", in: in(1, append(flatLoad(60, 1),
			Sample{At: tickAgo(60), Concurrency: 600}, Sample{At: tickAgo(61), Concurrency: 600}, Sample{At: tickAgo(3600), Concurrency: 600},
		)), desired: 1, wanted: 1},
		{name: "samples after tickNow are ignored", in: in(1, append(flatLoad(60, 1),
			Sample{At: tickNow.Add(time.Second), Concurrency: 600},
		)), desired: 1, wanted: 1},
		{name: "window is (now-60s, now] when now is mid-second", in: Input{
			Now: tickNow.Add(500 * time.Millisecond), Current: 1, Settings: roundSettings(nil),
			Samples: append(flatLoad(60, 1), Sample{At: tickAgo(60), Concurrency: 600}),
		}, desired: 1, wanted: 1},
		{name: "a shorter window forgets older load", in: Input{
			Current: 1, Settings: roundSettings(func(s *settings.AutoscalingSettings) { s.AutoscalingWindow = 10 }),
			Samples: append(flatLoad(10, 1), Sample{At: tickAgo(10), Concurrency: 600}, Sample{At: tickAgo(30), Concurrency: 600}),
		}, desired: 1, wanted: 1},
		{name: "NaN and negative samples are ignored", in: in(2, append(flatLoad(60, 2),
			Sample{At: tickAgo(0), Concurrency: math.NaN()}, Sample{At: tickAgo(1), Concurrency: -1000},
		)), desired: 2, wanted: 2},
		{name: "infinite load asks for max", in: in(1, []Sample{{At: tickAgo(0), Concurrency: math.Inf(1)}}),
			desired: 10, wanted: 10, reason: "scale up"},
	})
}

func TestDecide_UtilisationRounding(t *testing.T) {
	in := func(target, util int, samples []Sample) Input {
		return Input{Current: 1, Settings: roundSettings(func(s *settings.AutoscalingSettings) {
			s.AutoscalingWindow = 10
			s.ConcurrencyTarget = target
			s.TargetUtilizationPercentage = util
		}), Samples: samples}
	}
	runDecide(t, []decideCase{
		// 0.7 / 0.7 is one replica's worth exactly.
		{name: "0.7 at 70% of 1 is 1", in: in(1, 70, flatLoad(10, 0.7)), desired: 1, wanted: 1},
		// 2.1 / 0.7 is 3.0000000000000004 in float64.
		{name: "2.1 at 70% of 1 is 3, not 4", in: in(1, 70, flatLoad(10, 2.1)), desired: 3, wanted: 3},
		{name: "a little more than 2.1 at 70% of 1 is 4", in: in(1, 70, flatLoad(10, 2.11)), desired: 4, wanted: 4},
		{name: "1.0 at 70% of 1 is 2", in: in(1, 70, flatLoad(10, 1)), desired: 2, wanted: 2},
		{name: "14 at 70% of 10 is 2", in: in(10, 70, flatLoad(10, 14)), desired: 2, wanted: 2},
		{name: "14.1 at 70% of 10 is 3", in: in(10, 70, flatLoad(10, 14.1)), desired: 3, wanted: 3},
		{name: "0.3 summed from tenths at 30% of 1 is 1", in: in(1, 30, flatLoad(10, 0.3)), desired: 1, wanted: 1},
		{name: "3 at 50% of 2 is 3", in: in(2, 50, flatLoad(10, 3)), desired: 3, wanted: 3},
		{name: "any load asks for one", in: in(1, 100, flatLoad(1, 0.001)), desired: 1, wanted: 1},
	})
}

func TestDecide_ClampsToMinAndMax(t *testing.T) {
	runDecide(t, []decideCase{
		{name: "min without load", in: Input{Current: 0, Settings: roundSettings(func(s *settings.AutoscalingSettings) {
			s.MinReplica = 2
		})}, desired: 2, wanted: 2, reason: "scale up"},
		{name: "min holds when idle for long", in: Input{Current: 2, LastRequest: tickAgo(86400), Settings: roundSettings(func(s *settings.AutoscalingSettings) {
			s.MinReplica = 2
		})}, desired: 2, wanted: 2, reason: "steady"},
		{name: "max under heavy load", in: Input{Current: 1, Samples: flatLoad(60, 50), Settings: roundSettings(func(s *settings.AutoscalingSettings) {
			s.MaxReplica = 3
		})}, desired: 3, wanted: 3, reason: "scale up"},
		{name: "min above max: max wins", in: Input{Current: 0, Settings: roundSettings(func(s *settings.AutoscalingSettings) {
			s.MinReplica, s.MaxReplica = 5, 2
		})}, desired: 2, wanted: 2},
		{name: "zero settings", in: Input{Current: 0, Samples: flatLoad(60, 3), Settings: settings.AutoscalingSettings{}},
			desired: 1, wanted: 1}, // max 0 is read as 1
		{name: "negative settings", in: Input{Current: -3, Samples: flatLoad(60, 3), Settings: settings.AutoscalingSettings{
			MinReplica: -1, MaxReplica: -1, AutoscalingWindow: -1, ScaleDownDelay: -1,
			ConcurrencyTarget: -1, TargetUtilizationPercentage: -1, MaxScaleDownRate: -1,
		}}, desired: 1, wanted: 1},
		// Window 0 reads as 1s; target 0 as 1; utilisation 0 as 100: 3 in the last second is 3.
		{name: "zero window, target and utilisation", in: Input{Current: 0, Samples: flatLoad(60, 3), Settings: roundSettings(func(s *settings.AutoscalingSettings) {
			s.AutoscalingWindow, s.ConcurrencyTarget, s.TargetUtilizationPercentage = 0, 0, 0
		})}, desired: 3, wanted: 3},
	})
}

func TestDecide_ScaleDownWaitsForTheDelay(t *testing.T) {
	in := func(current int, load float64) Input {
		return Input{Current: current, Samples: flatLoad(60, load), LastRequest: tickNow, Settings: roundSettings(nil)}
	}
	runDecide(t, []decideCase{
		{name: "first lower tick starts the delay", in: in(4, 2),
			desired: 4, wanted: 2, reason: "hold: lower for 0s of 900s", lowSince: tickNow},
		{name: "not yet held", in: in(4, 2), st: State{LowSince: tickAgo(899)},
			desired: 4, wanted: 2, reason: "hold: lower for 899s of 900s", lowSince: tickAgo(899)},
		{name: "held for the delay", in: in(4, 2), st: State{LowSince: tickAgo(900)},
			desired: 2, wanted: 2, reason: "step down by at most 2", lowSince: tickAgo(900)},
		{name: "delay 0 steps down at once", in: Input{Current: 4, Samples: flatLoad(60, 2), LastRequest: tickNow,
			Settings: roundSettings(func(s *settings.AutoscalingSettings) { s.ScaleDownDelay = 0 })},
			desired: 2, wanted: 2, reason: "step down", lowSince: tickNow},
		{name: "LowSince in the future restarts the delay", in: in(4, 2), st: State{LowSince: tickNow.Add(time.Hour)},
			desired: 4, wanted: 2, reason: "hold: lower for 0s", lowSince: tickNow},
		{name: "load back to current resets LowSince", in: in(4, 4), st: State{LowSince: tickAgo(600)},
			desired: 4, wanted: 4, reason: "steady"},
		{name: "a partial dip restarts nothing", in: in(4, 3), st: State{LowSince: tickAgo(600)},
			desired: 4, wanted: 3, reason: "hold: lower for 600s", lowSince: tickAgo(600)},
	})
}

func TestDecide_ScaleUpAtOnceEvenMidDelay(t *testing.T) {
	runDecide(t, []decideCase{
		{name: "mid delay", in: Input{Current: 2, Samples: flatLoad(60, 5), Settings: roundSettings(nil)}, st: State{LowSince: tickAgo(899)},
			desired: 5, wanted: 5, reason: "scale up"},
		{name: "from zero on a request", in: Input{Current: 0, LastRequest: tickNow, Samples: []Sample{{At: tickNow, Requests: 1}}, Settings: roundSettings(nil)},
			desired: 1, wanted: 1, reason: "scale up"},
		{name: "far beyond the rate", in: Input{Current: 1, Samples: flatLoad(60, 9), Settings: roundSettings(nil)},
			desired: 9, wanted: 9, reason: "scale up"},
	})
}

func TestDecide_ScaleDownRate(t *testing.T) {
	in := func(current, wantLoad, rate int) Input {
		return Input{Current: current, Samples: flatLoad(60, float64(wantLoad)), LastRequest: tickNow,
			Settings: roundSettings(func(s *settings.AutoscalingSettings) { s.MaxScaleDownRate = rate })}
	}
	held := State{LowSince: tickAgo(900)}
	runDecide(t, []decideCase{
		{name: "10 at 50% steps 5", in: in(10, 1, 50), st: held, desired: 5, wanted: 1, reason: "step down by at most 5", lowSince: tickAgo(900)},
		{name: "10 at 25% steps 2", in: in(10, 1, 25), st: held, desired: 8, wanted: 1, reason: "step down by at most 2", lowSince: tickAgo(900)},
		{name: "10 at 1% steps 1", in: in(10, 1, 1), st: held, desired: 9, wanted: 1, reason: "step down by at most 1", lowSince: tickAgo(900)},
		{name: "3 at 50% steps 1", in: in(3, 1, 50), st: held, desired: 2, wanted: 1, reason: "step down by at most 1", lowSince: tickAgo(900)},
		{name: "rate 0 steps 1", in: in(10, 1, 0), st: held, desired: 9, wanted: 1, lowSince: tickAgo(900)},
		{name: "negative rate steps 1", in: in(10, 1, -50), st: held, desired: 9, wanted: 1, lowSince: tickAgo(900)},
		{name: "rate over 100 stops at wanted", in: in(10, 2, 500), st: held, desired: 2, wanted: 2, lowSince: tickAgo(900)},
		{name: "not below wanted", in: in(10, 8, 50), st: held, desired: 8, wanted: 8, lowSince: tickAgo(900)},
	})
}

// Successive ticks step down without a new delay, because LowSince stays.
func TestDecide_StepsDownTickAfterTickOnceHeld(t *testing.T) {
	s := roundSettings(nil)
	var st State
	current := 10
	var got []int
	for i := 0; i <= 905; i++ {
		load := 10.0
		if i >= 5 {
			load = 0.5 // one replica's worth, with requests still coming
		}
		tick := tickNow.Add(time.Duration(i) * time.Second)
		samples := []Sample{{At: tick, Concurrency: load * 60}} // the window's worth in one second
		d := Decide(Input{Now: tick, Current: current, Settings: s, Samples: samples, LastRequest: tick}, &st)
		if d.Desired != current {
			got = append(got, i, d.Desired)
			current = d.Desired
		}
	}
	// Load dropped at tick 5; held 900s at tick 905; then 10 → 5 and one step per tick after.
	if len(got) != 2 || got[0] != 905 || got[1] != 5 {
		t.Fatalf("changes (tick, desired) = %v, want [905 5]", got)
	}
	for i := 0; i < 3; i++ {
		tick := tickNow.Add(time.Duration(906+i) * time.Second)
		d := Decide(Input{Now: tick, Current: current, Settings: s, Samples: []Sample{{At: tick, Concurrency: 30}}, LastRequest: tick}, &st)
		current = d.Desired
	}
	if current != 1 {
		t.Errorf("after three more ticks current = %d, want 1 (5 → 3 → 2 → 1)", current)
	}
}

func TestDecide_LastReplicaToZero(t *testing.T) {
	in := func(current int, last time.Time, fn func(*settings.AutoscalingSettings)) Input {
		return Input{Current: current, LastRequest: last, Settings: roundSettings(fn)}
	}
	runDecide(t, []decideCase{
		{name: "idle for the delay", in: in(1, tickAgo(900), nil),
			desired: 0, wanted: 0, reason: "to zero: idle for 900s", lowSince: tickNow},
		{name: "never a request", in: in(1, time.Time{}, nil),
			desired: 0, wanted: 0, reason: "to zero: idle for at least 900s", lowSince: tickNow},
		{name: "a request 1s ago keeps 1", in: in(1, tickAgo(1), nil),
			desired: 1, wanted: 1, reason: "steady"},
		{name: "a request 899s ago keeps 1", in: in(1, tickAgo(899), nil),
			desired: 1, wanted: 1, reason: "steady"},
		{name: "a request in the samples keeps 1", in: Input{Current: 1, Samples: []Sample{{At: tickAgo(5), Requests: 1}}, Settings: roundSettings(nil)},
			desired: 1, wanted: 1, reason: "steady"},
		{name: "min 1 keeps 1 however idle", in: in(1, time.Time{}, func(s *settings.AutoscalingSettings) { s.MinReplica = 1 }),
			desired: 1, wanted: 1, reason: "steady"},
		{name: "delay 0 goes at once", in: in(1, tickNow, func(s *settings.AutoscalingSettings) { s.ScaleDownDelay = 0 }),
			desired: 0, wanted: 0, reason: "to zero", lowSince: tickNow},
		{name: "several idle replicas still step by the rate", in: in(4, tickAgo(900), nil),
			desired: 2, wanted: 0, reason: "step down by at most 2", lowSince: tickNow},
		{name: "zero stays zero", in: in(0, time.Time{}, nil),
			desired: 0, wanted: 0, reason: "steady"},
		{name: "a request wakes zero", in: in(0, tickNow, nil),
			desired: 1, wanted: 1, reason: "scale up"},
	})
}

func TestDecide_DevelopmentHasAtMostOneReplica(t *testing.T) {
	dev := func(current int, samples []Sample, fn func(*settings.AutoscalingSettings)) Input {
		return Input{Current: current, Development: true, Samples: samples, LastRequest: tickNow, Settings: roundSettings(fn)}
	}
	runDecide(t, []decideCase{
		{name: "settings max 5 under load", in: dev(1, flatLoad(60, 5), func(s *settings.AutoscalingSettings) { s.MaxReplica = 5 }),
			desired: 1, wanted: 1, reason: "steady"},
		{name: "min 3 is 1", in: dev(0, nil, func(s *settings.AutoscalingSettings) { s.MinReplica = 3 }),
			desired: 1, wanted: 1, reason: "scale up"},
		{name: "too many replicas are cut at once", in: dev(3, flatLoad(60, 5), nil),
			desired: 1, wanted: 1, reason: "cap at max 1"},
		{name: "idle development goes to zero", in: Input{Current: 1, Development: true, LastRequest: tickAgo(900), Settings: roundSettings(nil)},
			desired: 0, wanted: 0, reason: "to zero", lowSince: tickNow},
	})
}

// Lowered settings: max is a hard bound, cut to at once; below it the delay and rate apply.
func TestDecide_CurrentAboveMaxIsCutAtOnce(t *testing.T) {
	lowered := roundSettings(func(s *settings.AutoscalingSettings) { s.MaxReplica = 4 })
	runDecide(t, []decideCase{
		{name: "load at max", in: Input{Current: 10, Samples: flatLoad(60, 9), LastRequest: tickNow, Settings: lowered},
			desired: 4, wanted: 4, reason: "cap at max 4"},
		{name: "load below max holds at max", in: Input{Current: 10, Samples: flatLoad(60, 1), LastRequest: tickNow, Settings: lowered},
			desired: 4, wanted: 1, reason: "cap at max 4; hold: lower for 0s of 900s", lowSince: tickNow},
		{name: "held load below max steps from max", in: Input{Current: 10, Samples: flatLoad(60, 1), LastRequest: tickNow, Settings: lowered},
			st: State{LowSince: tickAgo(900)}, desired: 2, wanted: 1, reason: "cap at max 4; step down by at most 2", lowSince: tickAgo(900)},
	})
}

func TestDecide_NilStateIsAOneOffDecision(t *testing.T) {
	d := Decide(Input{Now: tickNow, Current: 1, Samples: flatLoad(60, 3), Settings: roundSettings(nil)}, nil)
	if d.Desired != 3 {
		t.Errorf("Decide(nil state) desired = %d, want 3", d.Desired)
	}
}

func TestDecide_QueuedAsyncRequestsCountAsLoad(t *testing.T) {
	queued := func(current, n int, fn func(*settings.AutoscalingSettings)) Input {
		return Input{Current: current, AsyncQueued: n, Settings: roundSettings(fn)}
	}
	runDecide(t, []decideCase{
		{name: "one queued request wakes zero", in: queued(0, 1, nil),
			desired: 1, wanted: 1, reason: "scale up"},
		{name: "a backlog of 4 asks for 4", in: queued(1, 4, nil),
			desired: 4, wanted: 4, reason: "scale up"},
		{name: "a backlog is cut at max", in: queued(1, 200, nil),
			desired: 10, wanted: 10, reason: "scale up"},
		{name: "a backlog adds to the window's load", in: Input{Current: 2, AsyncQueued: 2, Samples: flatLoad(60, 2), Settings: roundSettings(nil)},
			desired: 4, wanted: 4, reason: "scale up"},
		{name: "queued requests keep the last replica with delay 0", in: queued(1, 1, func(s *settings.AutoscalingSettings) { s.ScaleDownDelay = 0; s.ConcurrencyTarget = 8 }),
			desired: 1, wanted: 1, reason: "steady"},
		{name: "an empty queue lets it go to zero", in: queued(1, 0, func(s *settings.AutoscalingSettings) { s.ScaleDownDelay = 0 }),
			desired: 0, wanted: 0, reason: "to zero", lowSince: tickNow},
	})
}
