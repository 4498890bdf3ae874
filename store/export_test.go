package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
)

// AutoscalingTargetsByScan is AutoscalingTargets read from every deployment, as where the
// defaults' min_replica is above zero, for tests to compare the two.
func AutoscalingTargetsByScan(ctx context.Context, db sqlx.QueryerContext, now time.Time) ([]AutoscalingTarget, error) {
	return autoscalingTargets(ctx, db, now, true)
}
