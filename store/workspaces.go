package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/modelplane/modelplane"
)

// Workspace owns models, archives and API keys.
type Workspace struct {
	ID        string    `db:"id" json:"id"`
	Name      string    `db:"name" json:"name"`
	CreatedAt time.Time `db:"created_at" json:"created_at"`
}

// EnsureWorkspace returns the workspace called name, creating it if it does not exist.
// created says whether this call made it.
func EnsureWorkspace(ctx context.Context, db sqlx.ExtContext, name string) (ws Workspace, created bool, err error) {
	err = get(ctx, db, &ws, `
		INSERT INTO workspaces (id, name) VALUES ($1, $2)
		ON CONFLICT (name) DO NOTHING
		RETURNING id, name, created_at`, modelplane.NewID(8), name)
	if err == nil {
		return ws, true, nil
	}
	if err != ErrNotFound {
		return ws, false, err
	}
	ws, err = WorkspaceByName(ctx, db, name)
	return ws, false, err
}

// WorkspaceByName returns the workspace called name.
func WorkspaceByName(ctx context.Context, db sqlx.QueryerContext, name string) (Workspace, error) {
	var ws Workspace
	err := get(ctx, db, &ws, `SELECT id, name, created_at FROM workspaces WHERE name = $1`, name)
	return ws, err
}

// WorkspaceByID returns the workspace with the given ID.
func WorkspaceByID(ctx context.Context, db sqlx.QueryerContext, id string) (Workspace, error) {
	var ws Workspace
	err := get(ctx, db, &ws, `SELECT id, name, created_at FROM workspaces WHERE id = $1`, id)
	return ws, err
}
