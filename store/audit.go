package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
)

// AuditEvent is one thing someone did: which key, what action, on which object.
type AuditEvent struct {
	ID          int64     `db:"id"`
	WorkspaceID string    `db:"workspace_id"`
	ModelID     string    `db:"model_id"`
	Actor       string    `db:"actor"`
	Action      string    `db:"action"`
	Target      string    `db:"target"`
	Details     JSONMap   `db:"details"`
	CreatedAt   time.Time `db:"created_at"`
}

// RecordAudit appends an event; inside a transaction it is kept only if the change is.
func RecordAudit(ctx context.Context, db sqlx.ExecerContext, e AuditEvent) error {
	return exec(ctx, db, false, `
		INSERT INTO audit_events (workspace_id, model_id, actor, action, target, details)
		VALUES ($1, $2, $3, $4, $5, $6)`, e.WorkspaceID, e.ModelID, e.Actor, e.Action, e.Target, e.Details)
}

// ListAudit returns a model's events, newest first, at most limit of them, and only those
// older than event before when before is not 0 (for paging).
func ListAudit(ctx context.Context, db sqlx.QueryerContext, workspaceID, modelID string, before int64, limit int) ([]AuditEvent, error) {
	out := []AuditEvent{}
	err := list(ctx, db, &out, `
		SELECT * FROM audit_events
		WHERE workspace_id = $1 AND model_id = $2 AND ($3::bigint = 0 OR id < $3::bigint)
		ORDER BY id DESC LIMIT $4`, workspaceID, modelID, before, limit)
	return out, err
}
