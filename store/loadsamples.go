package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
)

// LoadSample is one gateway's average concurrency for a deployment over one second.
type LoadSample struct {
	DeploymentID string    `db:"deployment_id"`
	GatewayID    string    `db:"gateway_id"`
	At           time.Time `db:"at"`
	Concurrency  float64   `db:"concurrency"`
	Requests     int       `db:"requests"`
}

// InsertLoadSamples writes a batch of samples in one statement; a sample already written for
// the same deployment, gateway and second is replaced, so a retried batch counts once.
func InsertLoadSamples(ctx context.Context, db sqlx.ExtContext, samples []LoadSample) error {
	if len(samples) == 0 {
		return nil
	}
	_, err := sqlx.NamedExecContext(ctx, db, `
		INSERT INTO load_samples (deployment_id, gateway_id, at, concurrency, requests)
		VALUES (:deployment_id, :gateway_id, :at, :concurrency, :requests)
		ON CONFLICT (deployment_id, at, gateway_id)
		DO UPDATE SET concurrency = EXCLUDED.concurrency, requests = EXCLUDED.requests`, samples)
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
