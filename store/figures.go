package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/modelplane/modelplane"
)

// DeploymentFigures sums the load samples of a deployment with from <= at < to, over every
// gateway. A sample describes the second that begins at its at.
func DeploymentFigures(ctx context.Context, db sqlx.QueryerContext, deploymentID string, from, to time.Time) (modelplane.Figures, error) {
	var row struct {
		Completed int           `db:"completed"`
		Errors    int           `db:"errors"`
		Buckets   pq.Int64Array `db:"buckets"`
	}
	err := get(ctx, db, &row, `
		WITH s AS (
			SELECT completed, errors, latency_buckets FROM load_samples
			WHERE deployment_id = $1 AND at >= $2 AND at < $3
		)
		SELECT
			(SELECT COALESCE(sum(completed), 0) FROM s) AS completed,
			(SELECT COALESCE(sum(errors), 0) FROM s) AS errors,
			(SELECT COALESCE(array_agg(n ORDER BY i), '{}')
			 FROM (SELECT b.i, sum(b.n) AS n
			       FROM s, unnest(s.latency_buckets) WITH ORDINALITY AS b(n, i)
			       GROUP BY b.i) t) AS buckets`, deploymentID, from, to)
	if err != nil {
		return modelplane.Figures{}, err
	}
	return modelplane.Figures{Completed: row.Completed, Errors: row.Errors, P99: percentile99(row.Buckets)}, nil
}

// percentile99 is the upper bound of the bucket holding the nearest-rank 99th percentile of
// the counts by LatencyBounds, 0 when they count nothing.
func percentile99(buckets []int64) time.Duration {
	d, _ := LatencyQuantile(buckets, 9900)
	return d
}

// LatencyQuantile is the upper bound of the bucket that holds the nearest-rank quantile of
// the counts by LatencyBounds; basisPoints says which (9900 is the 99th percentile). The
// bucket above the last bound reports the last bound. ok is false when the counts count
// nothing.
func LatencyQuantile(buckets []int64, basisPoints int64) (d time.Duration, ok bool) {
	var total int64
	for _, n := range buckets {
		total += n
	}
	if total <= 0 || len(LatencyBounds) == 0 {
		return 0, false
	}
	rank := max((basisPoints*total+9999)/10000, 1) // ceil(q × total), in integers
	var seen int64
	for i, n := range buckets {
		seen += n
		if seen >= rank {
			return LatencyBounds[min(i, len(LatencyBounds)-1)], true
		}
	}
	return LatencyBounds[len(LatencyBounds)-1], true
}
