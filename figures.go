package modelplane

import "time"

// Figures are a deployment's answers over a time range, summed over gateways.
type Figures struct {
	// Completed is how many requests ended; Errors how many of them answered 5xx.
	Completed, Errors int
	// P99 is the upper bound of the latency bucket that holds the 99th percentile (nearest
	// rank) of the completed requests; the bucket above the last bound reports the last
	// bound. 0 when no request ended.
	P99 time.Duration
}

// ErrorRate is the share of completed requests that answered 5xx, 0 when none completed.
func (f Figures) ErrorRate() float64 {
	if f.Completed == 0 {
		return 0
	}
	return float64(f.Errors) / float64(f.Completed)
}
