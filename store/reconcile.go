package store

import (
	"context"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
)

// TemporalHistory is the Temporal history the database's workflows live in.
type TemporalHistory struct {
	Namespace   string    `db:"namespace"`
	NamespaceID string    `db:"namespace_id"`
	RecordedBy  string    `db:"recorded_by"`
	RecordedAt  time.Time `db:"recorded_at"`
}

// RecordedTemporalHistory returns the history recorded in the database, or ErrNotFound when
// none was.
func RecordedTemporalHistory(ctx context.Context, db sqlx.QueryerContext) (TemporalHistory, error) {
	var h TemporalHistory
	err := get(ctx, db, &h, `SELECT namespace, namespace_id, recorded_by, recorded_at FROM temporal_history`)
	return h, err
}

// RecordTemporalHistory records h as the database's history, replacing any other.
func RecordTemporalHistory(ctx context.Context, db sqlx.ExecerContext, h TemporalHistory) error {
	return exec(ctx, db, true, `
		INSERT INTO temporal_history (namespace, namespace_id, recorded_by) VALUES ($1, $2, $3)
		ON CONFLICT (singleton) DO UPDATE
		SET namespace = excluded.namespace, namespace_id = excluded.namespace_id,
		    recorded_by = excluded.recorded_by, recorded_at = now()`,
		h.Namespace, h.NamespaceID, h.RecordedBy)
}

// HoldsWorkflowState reports whether the database has rows that a workflow carries: a
// deployment not deleted, a promotion in progress or an async request with a workflow.
func HoldsWorkflowState(ctx context.Context, db sqlx.QueryerContext) (bool, error) {
	var out bool
	err := get(ctx, db, &out, `
		SELECT EXISTS (SELECT 1 FROM deployments WHERE deleted_at IS NULL)
		    OR EXISTS (SELECT 1 FROM promotions WHERE status IN `+sqlInProgressPromotionStatuses+`)
		    OR EXISTS (SELECT 1 FROM async_requests WHERE workflow_started AND `+asyncNeedsWorkflowSQL+`)`)
	return out, err
}

// LiveDeploymentRef names a deployment that is not deleted, so has an entity workflow.
type LiveDeploymentRef struct {
	ID      string `db:"id"`
	ModelID string `db:"model_id"`
}

// LiveDeploymentRefs lists every deployment that is not deleted, oldest first.
func LiveDeploymentRefs(ctx context.Context, db sqlx.QueryerContext) ([]LiveDeploymentRef, error) {
	out := []LiveDeploymentRef{}
	err := list(ctx, db, &out, `
		SELECT id, model_id FROM deployments WHERE deleted_at IS NULL ORDER BY created_at, id`)
	return out, err
}

// InProgressPromotions lists every promotion in progress, oldest first.
func InProgressPromotions(ctx context.Context, db sqlx.QueryerContext) ([]Promotion, error) {
	out := []Promotion{}
	err := list(ctx, db, &out, `
		SELECT * FROM promotions WHERE status IN `+sqlInProgressPromotionStatuses+` ORDER BY created_at, id`)
	return out, err
}

// asyncNeedsWorkflowSQL holds for a request that its workflow still has work for: it is open,
// or it ended with its webhook still to deliver.
var asyncNeedsWorkflowSQL = `(status IN ` + sqlOpenAsyncStatuses + ` OR webhook_status = ` + sqlWebhookPending + `)`

// StartedAsyncRequestsNeedingWorkflow lists the requests whose workflow ran and still has
// work for them, oldest first. Those never started are Cleanup's (UnstartedAsyncRequests).
func StartedAsyncRequestsNeedingWorkflow(ctx context.Context, db sqlx.QueryerContext) ([]AsyncRequest, error) {
	out := []AsyncRequest{}
	err := list(ctx, db, &out, `
		SELECT * FROM async_requests WHERE workflow_started AND `+asyncNeedsWorkflowSQL+`
		ORDER BY created_at, id`)
	return out, err
}

// CountAsyncWorkflowRestart records one restart of the request's workflow, if it has had
// fewer than most; it reports false, and records nothing, when it has had them all.
func CountAsyncWorkflowRestart(ctx context.Context, db sqlx.ExecerContext, id string, most int) (bool, error) {
	err := exec(ctx, db, true, `
		UPDATE async_requests SET workflow_restarts = workflow_restarts + 1
		WHERE id = $1 AND workflow_restarts < $2`, id, most)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}
