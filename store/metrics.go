package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// SampleSpan is a stretch of a deployment's load samples, From inclusive, To exclusive.
type SampleSpan struct {
	DeploymentID string
	From, To     time.Time
}

// LoadStep is the load samples of one step summed over deployments and gateways.
type LoadStep struct {
	// Index is the step's number from the start, 0 first.
	Index int `db:"k"`
	// Concurrency is the sum of the samples' average concurrency: divided by the step's
	// seconds it is the average number of requests in flight.
	Concurrency float64 `db:"concurrency"`
	// Requests arrived; Completed ended, Errors of them with 5xx (LoadSample says which).
	Requests  int `db:"requests"`
	Completed int `db:"completed"`
	Errors    int `db:"errors"`
	// Buckets counts the completed requests by latency, as LoadSample.LatencyBuckets.
	Buckets pq.Int64Array `db:"buckets"`
}

// LoadSteps sums the samples within spans into steps of the given length from start, up to
// end (exclusive). Only steps that have samples are returned, in order.
func LoadSteps(ctx context.Context, db sqlx.QueryerContext, spans []SampleSpan, start, end time.Time, step time.Duration) ([]LoadStep, error) {
	out := []LoadStep{}
	if len(spans) == 0 || !end.After(start) || step <= 0 {
		return out, nil
	}
	ids := make([]string, len(spans))
	froms := make([]time.Time, len(spans))
	tos := make([]time.Time, len(spans))
	for i, s := range spans {
		ids[i], froms[i], tos[i] = s.DeploymentID, s.From, s.To
	}
	err := list(ctx, db, &out, `
		WITH spans AS (
			SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::timestamptz[]) AS s(deployment_id, f, t)
		), s AS (
			SELECT floor(extract(epoch FROM ls.at - $4::timestamptz) / $6)::int AS k,
			       ls.concurrency, ls.requests, ls.completed, ls.errors, ls.latency_buckets
			FROM load_samples ls
			JOIN spans ON ls.deployment_id = spans.deployment_id AND ls.at >= spans.f AND ls.at < spans.t
			WHERE ls.at >= $4 AND ls.at < $5
		), b AS (
			SELECT s.k, u.i, sum(u.n)::bigint AS n
			FROM s, unnest(s.latency_buckets) WITH ORDINALITY AS u(n, i)
			GROUP BY s.k, u.i
		)
		SELECT t.k, t.concurrency, t.requests, t.completed, t.errors,
		       COALESCE((SELECT array_agg(b.n ORDER BY b.i) FROM b WHERE b.k = t.k), '{}') AS buckets
		FROM (SELECT k, sum(concurrency) AS concurrency, sum(requests) AS requests,
		             sum(completed) AS completed, sum(errors) AS errors
		      FROM s GROUP BY k) t
		ORDER BY t.k`,
		pq.Array(ids), pq.Array(froms), pq.Array(tos), start, end, step.Seconds())
	return out, err
}

// EarliestLoadSample is the time of the oldest load sample still kept (Cleanup prunes
// them), or nil when there is none: nothing is known of the load before it.
func EarliestLoadSample(ctx context.Context, db sqlx.QueryerContext) (*time.Time, error) {
	var at *time.Time
	err := get(ctx, db, &at, `SELECT min(at) FROM load_samples`)
	return at, err
}

// ReplicaStateCounts counts the replicas of the deployments that are READY and those that
// are starting (PENDING or STARTING).
func ReplicaStateCounts(ctx context.Context, db sqlx.QueryerContext, deploymentIDs []string) (ready, starting int, err error) {
	var row struct {
		Ready    int `db:"ready"`
		Starting int `db:"starting"`
	}
	err = get(ctx, db, &row, `
		SELECT count(*) FILTER (WHERE state = `+sqlReplicaReady+`) AS ready,
		       count(*) FILTER (WHERE state IN `+sqlStartingReplicaStates+`) AS starting
		FROM replicas WHERE deployment_id = ANY($1)`, pq.Array(deploymentIDs))
	return row.Ready, row.Starting, err
}

// EnvironmentPromotions returns every promotion of the environment, oldest first.
func EnvironmentPromotions(ctx context.Context, db sqlx.QueryerContext, modelID, env string) ([]Promotion, error) {
	out := []Promotion{}
	err := list(ctx, db, &out, `
		SELECT * FROM promotions WHERE model_id = $1 AND environment = $2
		ORDER BY created_at, id`, modelID, env)
	return out, err
}
