package nvml

import (
	"fmt"
	"time"
)

// healthBook keeps each GPU's health verdict from a stream of observations: a check failed
// (with a reason), or every check passed. It does no I/O and takes the time from its caller,
// so probation can be tested without sleeping. It is not safe for concurrent use.
type healthBook struct {
	probation time.Duration
	gpus      map[string]*gpuHealth
}

type gpuHealth struct {
	unhealthy bool
	reason    string
	// cleanSince is when the first all-pass observation after the last failure was made;
	// zero until there has been one. Probation runs from here.
	cleanSince time.Time
}

func newHealthBook(probation time.Duration) *healthBook {
	return &healthBook{probation: probation, gpus: map[string]*gpuHealth{}}
}

func (b *healthBook) entry(uuid string) *gpuHealth {
	h, ok := b.gpus[uuid]
	if !ok {
		h = &gpuHealth{}
		b.gpus[uuid] = h
	}
	return h
}

// fail records a failed check. It reports whether the GPU was healthy until now, so the
// caller logs the transition once rather than on every poll of a GPU that stays broken.
func (b *healthBook) fail(uuid, reason string) (wasHealthy bool) {
	h := b.entry(uuid)
	wasHealthy = !h.unhealthy
	h.unhealthy = true
	h.reason = reason
	h.cleanSince = time.Time{}
	return wasHealthy
}

// pass records that every check passed at now. It reports whether this ended the GPU's
// probation.
func (b *healthBook) pass(uuid string, now time.Time) (recovered bool) {
	h := b.entry(uuid)
	if !h.unhealthy {
		return false
	}
	if h.cleanSince.IsZero() {
		h.cleanSince = now
	}
	if now.Sub(h.cleanSince) >= b.probation {
		*h = gpuHealth{}
		return true
	}
	return false
}

// verdict says whether the GPU is healthy at now and, if not, why. It does not change the
// book: a GPU whose probation has run out but that has not been observed since is healthy.
func (b *healthBook) verdict(uuid string, now time.Time) (healthy bool, reason string) {
	h, ok := b.gpus[uuid]
	if !ok || !h.unhealthy {
		return true, ""
	}
	if h.cleanSince.IsZero() {
		return false, h.reason
	}
	clean := now.Sub(h.cleanSince)
	if clean >= b.probation {
		return true, ""
	}
	return false, fmt.Sprintf("%s; on probation, checks passing for %s of %s",
		h.reason, clean.Truncate(time.Second), b.probation)
}
