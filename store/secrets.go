package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
)

// Secret is a workspace secret's metadata. Its value is kept sealed (package secretbox) and
// read only by SealedSecrets, so no listing can carry it.
type Secret struct {
	ID          string    `db:"id"`
	WorkspaceID string    `db:"workspace_id"`
	Name        string    `db:"name"`
	CreatedAt   time.Time `db:"created_at"`
	UpdatedAt   time.Time `db:"updated_at"`
}

// UpsertSecret stores the workspace's secret name with its sealed value, replacing the value
// of one that exists (which keeps its ID and created_at), and answers its metadata.
func UpsertSecret(ctx context.Context, db sqlx.ExtContext, workspaceID, name string, sealed []byte) (Secret, error) {
	var out Secret
	err := get(ctx, db, &out, `
		INSERT INTO workspace_secrets (id, workspace_id, name, sealed_value) VALUES ($1, $2, $3, $4)
		ON CONFLICT (workspace_id, name) DO UPDATE SET sealed_value = excluded.sealed_value, updated_at = now()
		RETURNING id, workspace_id, name, created_at, updated_at`,
		modelplane.NewID(12), workspaceID, name, sealed)
	return out, err
}

// ListSecrets answers the workspace's secrets by name.
func ListSecrets(ctx context.Context, db sqlx.QueryerContext, workspaceID string) ([]Secret, error) {
	out := []Secret{}
	err := list(ctx, db, &out, `
		SELECT id, workspace_id, name, created_at, updated_at FROM workspace_secrets
		WHERE workspace_id = $1 ORDER BY name`, workspaceID)
	return out, err
}

// DeleteSecret removes the workspace's secret name and answers what it was; ErrNotFound
// when the workspace has no such secret.
func DeleteSecret(ctx context.Context, db sqlx.ExtContext, workspaceID, name string) (Secret, error) {
	var out Secret
	err := get(ctx, db, &out, `
		DELETE FROM workspace_secrets WHERE workspace_id = $1 AND name = $2
		RETURNING id, workspace_id, name, created_at, updated_at`, workspaceID, name)
	return out, err
}

// SealedSecrets answers the sealed values of those of names that the workspace has, by name.
// A name missing from the answer is a secret the workspace does not have.
func SealedSecrets(ctx context.Context, db sqlx.QueryerContext, workspaceID string, names []string) (map[string][]byte, error) {
	var rows []struct {
		Name   string `db:"name"`
		Sealed []byte `db:"sealed_value"`
	}
	if err := list(ctx, db, &rows, `
		SELECT name, sealed_value FROM workspace_secrets
		WHERE workspace_id = $1 AND name = ANY($2)`, workspaceID, pq.Array(names)); err != nil {
		return nil, err
	}
	out := make(map[string][]byte, len(rows))
	for _, r := range rows {
		out[r.Name] = r.Sealed
	}
	return out, nil
}

// SecretNames answers which of names the workspace has.
func SecretNames(ctx context.Context, db sqlx.QueryerContext, workspaceID string, names []string) (map[string]bool, error) {
	var have []string
	if err := list(ctx, db, &have, `
		SELECT name FROM workspace_secrets WHERE workspace_id = $1 AND name = ANY($2)`,
		workspaceID, pq.Array(names)); err != nil {
		return nil, err
	}
	out := make(map[string]bool, len(have))
	for _, n := range have {
		out[n] = true
	}
	return out, nil
}
