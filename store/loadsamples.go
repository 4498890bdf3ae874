package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// LatencyBounds are the upper bounds (inclusive) of the latency buckets that load samples
// count completed requests in, from a fast model's milliseconds to a long generation's
// minutes. A sample's LatencyBuckets has one count per bound and one more for everything
// above the last. Changing them changes what samples already written mean.
var LatencyBounds = []time.Duration{
	1 * time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 200 * time.Millisecond, 500 * time.Millisecond,
	1 * time.Second, 2 * time.Second, 5 * time.Second, 10 * time.Second,
	30 * time.Second, 60 * time.Second, 120 * time.Second, 300 * time.Second,
}

// LatencyBucket is the index in LatencyBuckets that a request that took d is counted at.
func LatencyBucket(d time.Duration) int {
	lo, hi := 0, len(LatencyBounds)
	for lo < hi {
		mid := int(uint(lo+hi) >> 1)
		if d <= LatencyBounds[mid] {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return lo
}

// LoadSample is one gateway's figures for a deployment over one second: its average
// concurrency, the requests that arrived, and the requests that ended, how many of those
// failed and how long they took.
type LoadSample struct {
	DeploymentID string    `db:"deployment_id"`
	GatewayID    string    `db:"gateway_id"`
	At           time.Time `db:"at"`
	Concurrency  float64   `db:"concurrency"`
	Requests     int       `db:"requests"`
	// Completed is how many requests ended in the second, whatever their answer.
	Completed int `db:"completed"`
	// Errors is how many of those answered 5xx, the gateway's own 502 and 504 included; a
	// client that left first (499) is no error.
	Errors int `db:"errors"`
	// LatencyBuckets counts the completed requests by end-to-end latency: len(LatencyBounds)+1
	// counts (see LatencyBucket), or none when no request ended.
	LatencyBuckets pq.Int64Array `db:"latency_buckets"`
}

// InsertLoadSamples writes a batch of samples in one statement; a sample already written for
// the same deployment, gateway and second is replaced, so a retried batch counts once.
func InsertLoadSamples(ctx context.Context, db sqlx.ExtContext, samples []LoadSample) error {
	if len(samples) == 0 {
		return nil
	}
	_, err := sqlx.NamedExecContext(ctx, db, `
		INSERT INTO load_samples (deployment_id, gateway_id, at, concurrency, requests,
			completed, errors, latency_buckets)
		VALUES (:deployment_id, :gateway_id, :at, :concurrency, :requests,
			:completed, :errors, COALESCE(CAST(:latency_buckets AS integer[]), '{}'))
		ON CONFLICT (deployment_id, at, gateway_id)
		DO UPDATE SET concurrency = EXCLUDED.concurrency, requests = EXCLUDED.requests,
			completed = EXCLUDED.completed, errors = EXCLUDED.errors,
			latency_buckets = EXCLUDED.latency_buckets`, samples)
	return translate(err)
}

// DeleteLoadSamplesBefore removes samples older than before and says how many went.
func DeleteLoadSamplesBefore(ctx context.Context, db sqlx.ExecerContext, before time.Time) (int64, error) {
	res, err := db.ExecContext(ctx, `DELETE FROM load_samples WHERE at < $1`, before)
	if err != nil {
		return 0, translate(err)
	}
	return res.RowsAffected()
}
