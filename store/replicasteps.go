package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// ReplicaStep is what the usage record tells of one step of a window: the replicas live at
// its end (or now, for the step that holds the present) and those placed within it.
type ReplicaStep struct {
	Live, Placed int
}

// ReplicaSteps counts, for each step of [start, end) of length step, the replicas of the
// spans' deployments live at the step's end and those placed within the step, each counted
// only within its deployment's span. Steps that begin after now are left zero. The usage
// record keeps every replica from its placement to its end, so past steps are as exact as
// the present one.
func ReplicaSteps(ctx context.Context, db sqlx.QueryerContext, spans []SampleSpan, start, end time.Time, step time.Duration, now time.Time) ([]ReplicaStep, error) {
	n := 0
	for t := start; t.Before(end); t = t.Add(step) {
		n++
	}
	out := make([]ReplicaStep, n)
	if len(spans) == 0 || step <= 0 {
		return out, nil
	}
	ids := make([]string, 0, len(spans))
	for _, s := range spans {
		ids = append(ids, s.DeploymentID)
	}
	var intervals []struct {
		DeploymentID string     `db:"deployment_id"`
		StartedAt    time.Time  `db:"started_at"`
		EndedAt      *time.Time `db:"ended_at"`
	}
	if err := list(ctx, db, &intervals, `
		SELECT deployment_id, started_at, ended_at FROM usage_intervals
		WHERE deployment_id = ANY($1) AND started_at < $3 AND (ended_at IS NULL OR ended_at > $2)`,
		pq.Array(ids), start, end); err != nil {
		return nil, err
	}
	within := func(deploymentID string, t time.Time) bool {
		for _, s := range spans {
			if s.DeploymentID == deploymentID && !t.Before(s.From) && !t.After(s.To) {
				return true
			}
		}
		return false
	}
	for k := range out {
		from := start.Add(time.Duration(k) * step)
		if from.After(now) {
			break
		}
		at := from.Add(step)
		if at.After(end) {
			at = end
		}
		if at.After(now) {
			at = now
		}
		for _, iv := range intervals {
			if !iv.StartedAt.After(at) && (iv.EndedAt == nil || iv.EndedAt.After(at)) && within(iv.DeploymentID, at) {
				out[k].Live++
			}
			if iv.StartedAt.After(from) && !iv.StartedAt.After(at) && within(iv.DeploymentID, iv.StartedAt) {
				out[k].Placed++
			}
		}
	}
	return out, nil
}
