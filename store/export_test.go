package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/settings"
)

// AutoscalingTargetsByScan is AutoscalingTargets read from every deployment, as where the
// defaults' min_replica is above zero, for tests to compare the two.
func AutoscalingTargetsByScan(ctx context.Context, db sqlx.QueryerContext, now time.Time) ([]AutoscalingTarget, error) {
	defaults, err := json.Marshal(settings.DefaultAutoscalingSettings())
	if err != nil {
		return nil, err
	}
	out := []AutoscalingTarget{}
	err = list(ctx, db, &out, autoscalingTargetsScanQuery, now, string(defaults), sqlArray(modelplane.AutoscaledDeploymentStatuses()))
	return out, err
}
