// Package autoscaler decides how many replicas a deployment should have from its recent load
// (DESIGN.md, "Autoscaling"). Decide is a pure function; the loop around it gathers samples,
// keeps State between ticks and sends Scale when the decision changes.
package autoscaler

import (
	"fmt"
	"math"
	"time"

	"github.com/modelplane/modelplane/settings"
)

// Sample is one second of a deployment's load, summed over gateways.
type Sample struct {
	At          time.Time // the second (truncated)
	Concurrency float64   // average in-flight requests over that second
	Requests    int       // requests started in that second
}

// State is what the loop keeps per deployment between ticks; the zero value is a fresh start.
type State struct {
	// LowSince is when the wanted count first fell below the current one and has stayed below since; zero otherwise.
	LowSince time.Time
}

// Input is one tick's view of one deployment.
type Input struct {
	Now         time.Time
	Current     int                          // replicas the deployment has (live), what Scale last set
	Settings    settings.AutoscalingSettings // MinReplica, MaxReplica, AutoscalingWindow (s), ScaleDownDelay (s), ConcurrencyTarget, TargetUtilizationPercentage, MaxScaleDownRate (percent)
	Development bool                         // the development deployment: at most one replica
	Samples     []Sample                     // samples within the autoscaling window (may be unsorted, may have gaps = 0 load)
	LastRequest time.Time                    // the last second in which any request started (zero: never / not within the longest window the loop reads)
	AsyncQueued int                          // async requests waiting in the deployment's queue now
}

// Decision is the outcome and why, for logs and tests.
type Decision struct {
	Desired int
	Wanted  int    // the count the load asks for, after clamping, before delay and rate limits
	Reason  string // e.g. "scale up", "hold: lower for 12s of 900s", "step down by at most 2", "to zero: idle for 900s"
}

// roundingEpsilon absorbs float error before rounding up, so that a load of exactly N
// replicas' worth (2.1 / 0.7 is 3.0000000000000004 in float64) asks for N, not N+1.
const roundingEpsilon = 1e-9

// scaleBounds are the settings Decide works with, made safe: out-of-range values (the API refuses
// them, but the store is not the API) are mapped to the nearest sensible value, never a panic.
type scaleBounds struct {
	min, max   int
	window     time.Duration
	delay      time.Duration
	perReplica float64 // concurrency one replica should carry: target x utilisation
	rate       int     // percent of replicas per step down
}

func scaleBoundsOf(s settings.AutoscalingSettings, development bool) scaleBounds {
	b := scaleBounds{
		min:    max(s.MinReplica, 0),
		max:    max(s.MaxReplica, 1),
		window: time.Duration(max(s.AutoscalingWindow, 1)) * time.Second,
		delay:  time.Duration(max(s.ScaleDownDelay, 0)) * time.Second,
		rate:   s.MaxScaleDownRate,
	}
	if development {
		b.max = 1
	}
	// The cap wins over the floor, as it does for the development deployment.
	b.min = min(b.min, b.max)
	target := max(s.ConcurrencyTarget, 1)
	util := s.TargetUtilizationPercentage
	if util <= 0 {
		util = 100
	}
	b.perReplica = float64(target) * float64(util) / 100
	return b
}

// Decide returns how many replicas the deployment should have now, and updates st (which may
// be nil for a one-off decision) for the next tick.
//
// Two choices the rules leave open:
//   - A Current above max_replica (settings lowered, or the development deployment) is cut to
//     max at once, without the delay or the rate limit: max is a hard bound the user set, and
//     the delay is about load, not settings. Below max the usual delay and rate apply.
//   - A Wanted of 0 is only possible when no request started within scale_down_delay, so that
//     idle period already served the delay: the step down to zero does not wait a second
//     delay, it is still rate-limited.
func Decide(in Input, st *State) Decision {
	if st == nil {
		st = &State{}
	}
	b := scaleBoundsOf(in.Settings, in.Development)
	current := max(in.Current, 0)

	wanted, idle := wantedReplicas(in, b)
	from := min(current, b.max)
	var capped string
	if from < current {
		capped = fmt.Sprintf("cap at max %d; ", b.max)
	}

	switch {
	case wanted > from:
		st.LowSince = time.Time{}
		return Decision{Desired: wanted, Wanted: wanted, Reason: "scale up"}
	case wanted == from:
		st.LowSince = time.Time{}
		if capped != "" {
			return Decision{Desired: from, Wanted: wanted, Reason: fmt.Sprintf("cap at max %d", b.max)}
		}
		return Decision{Desired: from, Wanted: wanted, Reason: "steady"}
	}

	if st.LowSince.IsZero() || st.LowSince.After(in.Now) {
		st.LowSince = in.Now
	}
	held := in.Now.Sub(st.LowSince)
	if held < b.delay && wanted > 0 {
		return Decision{Desired: from, Wanted: wanted, Reason: fmt.Sprintf("%shold: lower for %s of %s", capped, wholeSeconds(held), wholeSeconds(b.delay))}
	}
	// LowSince stays as it is, so the next tick may step again without a new delay.
	step := max(1, from*b.rate/100)
	desired := max(wanted, from-step)
	if desired == 0 {
		return Decision{Desired: 0, Wanted: wanted, Reason: fmt.Sprintf("%sto zero: idle for %s", capped, idle)}
	}
	return Decision{Desired: desired, Wanted: wanted, Reason: fmt.Sprintf("%sstep down by at most %d", capped, step)}
}

// wantedReplicas is the count the load asks for, clamped to the bounds, and, when it is zero,
// how long the deployment has been idle (for the reason).
func wantedReplicas(in Input, b scaleBounds) (int, string) {
	// Average over the whole window: a second with no sample is a second with no load.
	var sum float64
	start := in.Now.Add(-b.window)
	last := in.LastRequest
	for _, s := range in.Samples {
		if s.At.After(in.Now) {
			continue
		}
		if s.Requests > 0 && s.At.After(last) {
			last = s.At
		}
		if !s.At.After(start) || math.IsNaN(s.Concurrency) || s.Concurrency < 0 {
			continue
		}
		sum += s.Concurrency
	}
	// Queued async requests are load that is here now and not yet running: each counts as
	// one request in flight, so a backlog wakes the deployment and scales it up.
	raw := (sum/b.window.Seconds() + float64(max(in.AsyncQueued, 0))) / b.perReplica

	var wanted int
	switch {
	case raw >= float64(b.max): // also +Inf; converting that to int is undefined
		wanted = b.max
	case raw > 0: // below roundingEpsilon this rounds to 0
		wanted = int(math.Ceil(raw - roundingEpsilon))
	}

	floor := b.min
	if floor == 0 && (in.AsyncQueued > 0 || !last.IsZero() && last.After(in.Now.Add(-b.delay))) {
		// A request within the delay, or one waiting in the async queue, keeps (or brings
		// back) one replica.
		floor = 1
	}
	wanted = min(max(wanted, floor), b.max)
	if wanted > 0 {
		return wanted, ""
	}
	if last.IsZero() {
		return 0, "at least " + wholeSeconds(b.delay)
	}
	return 0, wholeSeconds(in.Now.Sub(last))
}

// wholeSeconds writes a duration as whole seconds, "12s", as the reasons read.
func wholeSeconds(d time.Duration) string {
	return fmt.Sprintf("%ds", int64(d/time.Second))
}

// Room is what a workspace may still start under its quotas: replicas, and GPUs. Either may
// be negative when a quota was lowered below what runs.
type Room struct {
	Replicas int
	GPUs     int
}

// FitQuota holds a scale-up of a deployment that has current replicas, each holding
// gpusPerReplica GPUs, to the room its workspace has left, and takes what it grants from room
// (shared by the workspace's deployments within a tick). A decision that does not scale up
// is returned as it is. A held decision keeps Wanted and says why in Reason, naming the quota,
// its room and what was granted.
func FitQuota(d Decision, current, gpusPerReplica int, room *Room) Decision {
	current = max(current, 0)
	up := d.Desired - current
	if up <= 0 {
		return d
	}
	allowed := max(room.Replicas, 0)
	why := fmt.Sprintf("replicas quota (%d left)", allowed)
	if gpusPerReplica > 0 && max(room.GPUs, 0)/gpusPerReplica < allowed {
		allowed = max(room.GPUs, 0) / gpusPerReplica
		why = fmt.Sprintf("gpus quota (%d left, %d per replica)", max(room.GPUs, 0), gpusPerReplica)
	}
	granted := min(up, allowed)
	room.Replicas -= granted
	room.GPUs -= granted * max(gpusPerReplica, 0)
	if granted == up {
		return d
	}
	held := d
	held.Desired = current + granted
	held.Reason = fmt.Sprintf("%s; held at %d of %d by the workspace's %s", d.Reason, held.Desired, d.Desired, why)
	return held
}
