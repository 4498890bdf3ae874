package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/modelplane/modelplane/settings"
)

// UpdateEnvironmentShadow replaces the environment's shadow settings. Their change time
// moves to now, so the comparison figures start again from zero, and the figures counted
// under the previous settings are removed.
func UpdateEnvironmentShadow(ctx context.Context, db sqlx.ExecerContext, modelID, name string, s settings.ShadowSettings) error {
	if err := exec(ctx, db, true, `
		UPDATE environments SET shadow_settings = $3, shadow_changed_at = now(), updated_at = now()
		WHERE model_id = $1 AND name = $2`, modelID, name, s); err != nil {
		return err
	}
	return exec(ctx, db, false, `DELETE FROM shadow_stats WHERE model_id = $1 AND environment = $2`, modelID, name)
}

// DeploymentOwner says which of the workspace's models a deployment belongs to, and whether
// it was deleted; a deployment of another workspace is ErrNotFound, like one that does not
// exist.
func DeploymentOwner(ctx context.Context, db sqlx.QueryerContext, workspaceID, id string) (modelID string, deleted bool, err error) {
	var row struct {
		ModelID string `db:"model_id"`
		Deleted bool   `db:"deleted"`
	}
	err = get(ctx, db, &row, `
		SELECT model_id, deleted_at IS NOT NULL AS deleted FROM deployments WHERE id = $1 AND workspace_id = $2`,
		id, workspaceID)
	return row.ModelID, row.Deleted, err
}

// ShadowStats are one gateway run's running totals of the shadow copies it made for an
// environment under the settings that changed at ChangedAt.
type ShadowStats struct {
	ModelID     string    `db:"model_id"`
	Environment string    `db:"environment"`
	ChangedAt   time.Time `db:"changed_at"`
	// GatewayRun names one run of one gateway: a restarted gateway counts from zero again
	// under a new run, beside what its previous run wrote.
	GatewayRun string `db:"gateway_run"`
	// Copied counts the copies sent; each ends as Equal, Different or Errors. Dropped counts
	// the requests chosen for a copy that were not sent.
	Copied    int64 `db:"copied"`
	Equal     int64 `db:"equal"`
	Different int64 `db:"different"`
	Errors    int64 `db:"errors"`
	Dropped   int64 `db:"dropped"`
	// PrimaryLatency and ShadowLatency count the compared pairs' latencies by LatencyBounds
	// (see LatencyBucket): the caller's answer and the copy's.
	PrimaryLatency pq.Int64Array `db:"primary_latency_buckets"`
	ShadowLatency  pq.Int64Array `db:"shadow_latency_buckets"`
}

// WriteShadowStats records each run's totals, replacing what the same run wrote before, so
// that a write retried after a failure counts once. Totals for settings that are no longer
// the environment's, or for an environment that is gone, are not written.
func WriteShadowStats(ctx context.Context, db sqlx.ExtContext, stats []ShadowStats) error {
	for _, s := range stats {
		_, err := sqlx.NamedExecContext(ctx, db, `
			INSERT INTO shadow_stats (model_id, environment, changed_at, gateway_run, copied, equal, different,
				errors, dropped, primary_latency_buckets, shadow_latency_buckets)
			SELECT :model_id, :environment, :changed_at, :gateway_run, :copied, :equal, :different,
				:errors, :dropped, COALESCE(CAST(:primary_latency_buckets AS bigint[]), '{}'),
				COALESCE(CAST(:shadow_latency_buckets AS bigint[]), '{}')
			WHERE EXISTS (SELECT 1 FROM environments
			              WHERE model_id = :model_id AND name = :environment AND shadow_changed_at = :changed_at)
			ON CONFLICT (model_id, environment, changed_at, gateway_run)
			DO UPDATE SET copied = EXCLUDED.copied, equal = EXCLUDED.equal, different = EXCLUDED.different,
				errors = EXCLUDED.errors, dropped = EXCLUDED.dropped,
				primary_latency_buckets = EXCLUDED.primary_latency_buckets,
				shadow_latency_buckets = EXCLUDED.shadow_latency_buckets, updated_at = now()`, s)
		if err != nil {
			return translate(err)
		}
	}
	return nil
}

// ShadowFigures are an environment's shadow figures summed over every gateway run.
type ShadowFigures struct {
	Copied, Equal, Different, Errors, Dropped int64
	// PrimaryP99 and ShadowP99 are the upper bounds of the latency buckets that hold the 99th
	// percentiles of the compared pairs; 0 when none was compared.
	PrimaryP99, ShadowP99 time.Duration
}

// Compared is how many copies were compared: those that ended equal, different or in error.
func (f ShadowFigures) Compared() int64 { return f.Equal + f.Different + f.Errors }

// Agreement is the percent of compared copies that were equal, 0 when none was compared.
func (f ShadowFigures) Agreement() float64 {
	if f.Compared() == 0 {
		return 0
	}
	return 100 * float64(f.Equal) / float64(f.Compared())
}

// SumShadowStats adds up the environment's figures under the settings that changed at
// changedAt.
func SumShadowStats(ctx context.Context, db sqlx.QueryerContext, modelID, env string, changedAt time.Time) (ShadowFigures, error) {
	var rows []ShadowStats
	if err := list(ctx, db, &rows, `
		SELECT model_id, environment, changed_at, gateway_run, copied, equal, different, errors, dropped,
		       primary_latency_buckets, shadow_latency_buckets
		FROM shadow_stats WHERE model_id = $1 AND environment = $2 AND changed_at = $3`,
		modelID, env, changedAt); err != nil {
		return ShadowFigures{}, err
	}
	var f ShadowFigures
	primary := make([]int64, len(LatencyBounds)+1)
	shadow := make([]int64, len(LatencyBounds)+1)
	for _, r := range rows {
		f.Copied += r.Copied
		f.Equal += r.Equal
		f.Different += r.Different
		f.Errors += r.Errors
		f.Dropped += r.Dropped
		addBuckets(primary, r.PrimaryLatency)
		addBuckets(shadow, r.ShadowLatency)
	}
	f.PrimaryP99, f.ShadowP99 = percentile99(primary), percentile99(shadow)
	return f, nil
}

// addBuckets adds latency counts into sum, which has a count for every bucket.
func addBuckets(sum, counts []int64) {
	for i, n := range counts {
		if i < len(sum) {
			sum[i] += n
		}
	}
}
