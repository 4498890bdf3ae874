package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/bench/internal/benchenv"
)

// accResult is what the acceptance phase measured.
type accResult struct {
	sync, async loadResult
	// after counts the deployment's async requests by status at the end of the async
	// measurement, the warm-up's included.
	after map[modelplane.AsyncStatus]int
}

// acceptance measures predict, then async_predict, on the deployment: c.Clients closed-loop
// clients for c.Warmup unmeasured, then for c.Duration.
func (b *bench) acceptance(ctx context.Context, c config, modelID, depID string) (accResult, error) {
	var res accResult
	for _, m := range []struct {
		rt  route
		out *loadResult
	}{{b.predictRoute(modelID, depID), &res.sync}, {b.asyncRoute(modelID, depID), &res.async}} {
		progress("acceptance: %s, %d clients, %s warm-up and %s measured", m.rt.name, c.Clients, c.Warmup, c.Duration)
		if c.Warmup > 0 {
			if w := b.drive(ctx, m.rt, c.Clients, 0, c.Warmup); w.bad > 0 {
				return res, fmt.Errorf("acceptance warm-up: %d of %d %s requests failed; the first: %s", w.bad, w.requests, m.rt.name, w.firstBad)
			}
		}
		*m.out = b.drive(ctx, m.rt, c.Clients, 0, c.Duration)
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if m.out.bad > 0 {
			return res, fmt.Errorf("acceptance: %d of %d %s requests were not answered %d; the first: %s",
				m.out.bad, m.out.requests, m.rt.name, m.rt.want, m.out.firstBad)
		}
		progress("acceptance: %s: %d in %s (%.0f/s)", m.rt.name, m.out.requests, m.out.elapsed.Round(time.Millisecond), m.out.perSecond())
	}
	var err error
	res.after, err = b.statusCounts(ctx, depID)
	return res, err
}

// drainResult is what the drain phase measured.
type drainResult struct {
	sync   loadResult // the baseline: c.N predicts
	submit loadResult // the c.N async_predict submissions
	rows   []asyncRow
	// first is the earliest started_at of the async requests, last their latest finished_at.
	first, last time.Time
	// maxInProgress is the most requests seen IN_PROGRESS at once while polling.
	maxInProgress int
	// waited is how long after the first submission the poll saw every request ended.
	waited time.Duration
}

// completion is the time from the first submission until the last request finished.
func (r drainResult) completion() time.Duration { return r.last.Sub(r.submit.began) }

func (r drainResult) completionsPerSecond() float64 { return perSecond(len(r.rows), r.completion()) }

// span is the time from the first request's start until the last one finished: the drain.
func (r drainResult) span() time.Duration { return r.last.Sub(r.first) }

func (r drainResult) drainPerSecond() float64 { return perSecond(len(r.rows), r.span()) }

// busySlots is how many slots were busy on average during the drain: the requests' time
// from started_at to finished_at, summed, over the span.
func (r drainResult) busySlots() float64 {
	if r.span() <= 0 {
		return 0
	}
	var held time.Duration
	for _, row := range r.rows {
		if d, ok := since(row.FinishedAt, row.StartedAt); ok {
			held += d
		}
	}
	return held.Seconds() / r.span().Seconds()
}

func perSecond(n int, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return float64(n) / d.Seconds()
}

// asyncRow is an async request's row with the times of its last attempt.
type asyncRow struct {
	ID              string                 `db:"id"`
	Status          modelplane.AsyncStatus `db:"status"`
	Attempts        int                    `db:"attempts"`
	Errors          string                 `db:"errors"`
	CreatedAt       time.Time              `db:"created_at"`
	StartedAt       *time.Time             `db:"started_at"`
	FinishedAt      *time.Time             `db:"finished_at"`
	AttemptCreated  *time.Time             `db:"attempt_created"`
	AttemptStarted  *time.Time             `db:"attempt_started"`
	AttemptFinished *time.Time             `db:"attempt_finished"`
}

// drain measures c.N predicts by c.Clients clients, then c.N async requests submitted as fast
// as c.Clients clients can, until the last has ended.
func (b *bench) drain(ctx context.Context, c config, modelID, depID string) (drainResult, error) {
	var res drainResult
	progress("drain: %d predicts, %d clients", c.N, c.Clients)
	res.sync = b.drive(ctx, b.predictRoute(modelID, depID), c.Clients, c.N, 0)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.sync.bad > 0 {
		return res, fmt.Errorf("drain baseline: %d of %d predicts failed; the first: %s", res.sync.bad, res.sync.requests, res.sync.firstBad)
	}
	progress("drain: predicts took %s (%.0f/s)", res.sync.elapsed.Round(time.Millisecond), res.sync.perSecond())

	progress("drain: %d async requests", c.N)
	polled := make(chan pollResult, 1)
	pollCtx, stopPoll := context.WithCancel(ctx)
	defer stopPoll()
	go func() { polled <- b.pollUntilEnded(pollCtx, "drain", depID, c.N, c.Timeout) }()
	res.submit = b.drive(ctx, b.asyncRoute(modelID, depID), c.Clients, c.N, 0)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.submit.bad > 0 {
		return res, fmt.Errorf("drain: %d of %d async_predict were not answered 201; the first: %s",
			res.submit.bad, res.submit.requests, res.submit.firstBad)
	}
	progress("drain: submitted in %s (%.0f/s); waiting for them to end", res.submit.elapsed.Round(time.Millisecond), res.submit.perSecond())
	p := <-polled
	res.maxInProgress, res.waited = p.maxInProgress, p.ended.Sub(res.submit.began)
	if p.err != nil {
		return res, p.err
	}
	var err error
	if res.rows, err = b.succeededRows(ctx, "drain", depID, res.submit.ids); err != nil {
		return res, err
	}
	for i, r := range res.rows {
		if i == 0 || r.StartedAt.Before(res.first) {
			res.first = *r.StartedAt
		}
		if r.FinishedAt.After(res.last) {
			res.last = *r.FinishedAt
		}
	}
	progress("drain: all %d SUCCEEDED, drained in %s (%.0f/s), the last %s after the first submission",
		c.N, res.span().Round(time.Millisecond), res.drainPerSecond(), res.completion().Round(time.Millisecond))
	return res, nil
}

// steadyResult is what the steady-state phase measured.
type steadyResult struct {
	rate   float64    // requests a second asked for
	submit loadResult // the open loop's async_predict submissions
	rows   []asyncRow
}

// queueWaits are the requests' times from created_at to started_at: the wait for a free slot.
func (r steadyResult) queueWaits() []time.Duration {
	var v []time.Duration
	for _, row := range r.rows {
		if d, ok := since(row.StartedAt, &row.CreatedAt); ok {
			v = append(v, d)
		}
	}
	return v
}

// steady sends async requests to the deployment at c.SteadyRate for c.SteadyDuration, then
// waits until they have all ended; the deployment's earlier c.N requests have ended already.
func (b *bench) steady(ctx context.Context, c config, modelID, depID string) (steadyResult, error) {
	res := steadyResult{rate: c.SteadyRate}
	progress("steady state: %.0f async requests a second for %s", c.SteadyRate, c.SteadyDuration)
	res.submit = b.openLoop(ctx, b.asyncRoute(modelID, depID), c.SteadyRate, c.SteadyDuration, steadyInFlight)
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.submit.bad > 0 {
		return res, fmt.Errorf("steady state: %d of %d async_predict were not answered 201; the first: %s",
			res.submit.bad, res.submit.requests, res.submit.firstBad)
	}
	progress("steady state: submitted %d in %s (%.0f/s); waiting for them to end",
		res.submit.requests, res.submit.elapsed.Round(time.Millisecond), res.submit.perSecond())
	if p := b.pollUntilEnded(ctx, "steady state", depID, c.N+res.submit.requests, c.Timeout); p.err != nil {
		return res, p.err
	}
	var err error
	if res.rows, err = b.succeededRows(ctx, "steady state", depID, res.submit.ids); err != nil {
		return res, err
	}
	w := res.queueWaits()
	progress("steady state: all %d SUCCEEDED; in queue p50 %s, p99 %s", len(res.rows),
		durText(benchenv.Percentile(w, 50)), durText(benchenv.Percentile(w, 99)))
	return res, nil
}

// succeededRows reads the rows of the requests ids with their last attempts, and fails unless
// every one is there and SUCCEEDED with started_at and finished_at.
func (b *bench) succeededRows(ctx context.Context, phase, depID string, ids []string) ([]asyncRow, error) {
	var rows []asyncRow
	if err := b.db.SelectContext(ctx, &rows, `
		SELECT r.id, r.status, r.attempts, r.errors::text AS errors, r.created_at, r.started_at, r.finished_at,
		       a.created_at AS attempt_created, a.started_at AS attempt_started, a.finished_at AS attempt_finished
		FROM async_requests r
		LEFT JOIN async_attempts a ON a.request_id = r.id AND a.attempt = r.attempts
		WHERE r.id = ANY($1)`, pq.Array(ids)); err != nil {
		return nil, err
	}
	if len(rows) != len(ids) {
		return nil, fmt.Errorf("%s: %d of the %d accepted async requests recorded", phase, len(rows), len(ids))
	}
	var failed []string
	for _, r := range rows {
		if r.Status != modelplane.AsyncSucceeded {
			if len(failed) < 3 {
				failed = append(failed, fmt.Sprintf("%s %s after %d attempt(s): %s", r.ID, r.Status, r.Attempts, r.Errors))
			}
			continue
		}
		if r.StartedAt == nil || r.FinishedAt == nil {
			return nil, fmt.Errorf("%s: request %s is SUCCEEDED without started_at and finished_at", phase, r.ID)
		}
	}
	if failed != nil {
		counts, err := b.statusCounts(ctx, depID)
		if err != nil {
			return nil, err
		}
		return nil, fmt.Errorf("%s: not every request SUCCEEDED (the deployment's: %s); for example: %s",
			phase, countsText(counts), strings.Join(failed, "; "))
	}
	return rows, nil
}

// pollResult is what polling the deployment's async requests saw.
type pollResult struct {
	ended         time.Time // when every request was seen ended
	maxInProgress int
	err           error
}

// pollUntilEnded reads the deployment's async requests every pollEvery until n of them have
// ended, for at most timeout.
func (b *bench) pollUntilEnded(ctx context.Context, phase, depID string, n int, timeout time.Duration) pollResult {
	var p pollResult
	deadline := time.Now().Add(timeout)
	for {
		byStatus, err := b.statusCounts(ctx, depID)
		var counts struct{ Ended, InProgress, Queued int }
		for s, k := range byStatus {
			switch {
			case s == modelplane.AsyncQueued:
				counts.Queued += k
			case s == modelplane.AsyncInProgress:
				counts.InProgress += k
			default:
				counts.Ended += k
			}
		}
		switch {
		case ctx.Err() != nil:
			p.err = ctx.Err()
			return p
		case err != nil:
			p.err = fmt.Errorf("reading the async requests: %w", err)
			return p
		}
		p.maxInProgress = max(p.maxInProgress, counts.InProgress)
		if counts.Ended >= n {
			p.ended = time.Now()
			return p
		}
		if time.Now().After(deadline) {
			p.err = fmt.Errorf("%s: only %d of %d async requests ended within %s (%d queued, %d in progress)",
				phase, counts.Ended, n, timeout, counts.Queued, counts.InProgress)
			return p
		}
		if err := sleep(ctx, pollEvery); err != nil {
			p.err = err
			return p
		}
	}
}

// statusCounts counts the deployment's async requests by status.
func (b *bench) statusCounts(ctx context.Context, depID string) (map[modelplane.AsyncStatus]int, error) {
	var rows []struct {
		Status modelplane.AsyncStatus `db:"status"`
		N      int                    `db:"n"`
	}
	if err := b.db.SelectContext(ctx, &rows, `
		SELECT status, count(*) AS n FROM async_requests WHERE deployment_id = $1 GROUP BY status`, depID); err != nil {
		return nil, err
	}
	out := map[modelplane.AsyncStatus]int{}
	for _, r := range rows {
		out[r.Status] = r.N
	}
	return out, nil
}

// countsText lists status counts in a fixed order: "3 SUCCEEDED, 1 FAILED".
func countsText(counts map[modelplane.AsyncStatus]int) string {
	var parts []string
	for _, s := range modelplane.AsyncStatuses() {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	var other []string
	for s, n := range counts {
		if !s.Valid() {
			other = append(other, fmt.Sprintf("%d %s", n, s))
		}
	}
	sort.Strings(other)
	parts = append(parts, other...)
	if len(parts) == 0 {
		return "none"
	}
	return strings.Join(parts, ", ")
}
