package store

import (
	"context"
	"encoding/json"
	"time"

	"github.com/jmoiron/sqlx"
)

// Archive is an uploaded model package of a workspace; its bytes are in the blob store under
// ID ("sha256:<hex>").
type Archive struct {
	WorkspaceID string          `db:"workspace_id"`
	ID          string          `db:"id"`
	SizeBytes   int64           `db:"size_bytes"`
	Config      json.RawMessage `db:"config"`
	CreatedAt   time.Time       `db:"created_at"`
}

// CreateArchive records an upload; recording the same archive again keeps the first record
// and answers created false.
func CreateArchive(ctx context.Context, db sqlx.ExtContext, a Archive) (Archive, bool, error) {
	var out Archive
	err := get(ctx, db, &out, `
		INSERT INTO archives (workspace_id, id, size_bytes, config) VALUES ($1, $2, $3, $4)
		ON CONFLICT (workspace_id, id) DO NOTHING
		RETURNING *`, a.WorkspaceID, a.ID, a.SizeBytes, []byte(a.Config))
	if err == ErrNotFound {
		out, err = ArchiveByID(ctx, db, a.WorkspaceID, a.ID)
		return out, false, err
	}
	return out, err == nil, err
}

// ArchiveByID returns one of the workspace's archives.
func ArchiveByID(ctx context.Context, db sqlx.QueryerContext, workspaceID, id string) (Archive, error) {
	var a Archive
	err := get(ctx, db, &a, `SELECT * FROM archives WHERE workspace_id = $1 AND id = $2`, workspaceID, id)
	return a, err
}

// ArchiveExists reports whether any workspace has the archive, for serving it to agents.
func ArchiveExists(ctx context.Context, db sqlx.QueryerContext, id string) (bool, error) {
	var ok bool
	err := get(ctx, db, &ok, `SELECT EXISTS (SELECT 1 FROM archives WHERE id = $1)`, id)
	return ok, err
}
