package store

import (
	"context"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
)

// APIKey is a stored key: its public ID and the SHA-256 of its secret, never the secret.
type APIKey struct {
	ID           string     `db:"id"`
	WorkspaceID  string     `db:"workspace_id"`
	Name         string     `db:"name"`
	SecretSHA256 []byte     `db:"secret_sha256"`
	IsAdmin      bool       `db:"is_admin"`
	CreatedAt    time.Time  `db:"created_at"`
	LastUsedAt   *time.Time `db:"last_used_at"`
	RevokedAt    *time.Time `db:"revoked_at"`
}

// CreateAPIKey stores k; ID, WorkspaceID and SecretSHA256 must be set.
func CreateAPIKey(ctx context.Context, db sqlx.ExtContext, k APIKey) (APIKey, error) {
	var out APIKey
	err := get(ctx, db, &out, `
		INSERT INTO api_keys (id, workspace_id, name, secret_sha256, is_admin)
		VALUES ($1, $2, $3, $4, $5)
		RETURNING *`, k.ID, k.WorkspaceID, k.Name, k.SecretSHA256, k.IsAdmin)
	return out, err
}

// APIKeyByID returns the key with the given public ID, revoked or not.
func APIKeyByID(ctx context.Context, db sqlx.QueryerContext, id string) (APIKey, error) {
	var k APIKey
	err := get(ctx, db, &k, `SELECT * FROM api_keys WHERE id = $1`, id)
	return k, err
}

// RevokeAPIKey marks the key revoked; revoking twice keeps the first time. Gateways, which
// cache keys, are told at once.
func RevokeAPIKey(ctx context.Context, db sqlx.ExecerContext, id string) error {
	if err := exec(ctx, db, true, `UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = $1`, id); err != nil {
		return err
	}
	return NotifyRoutes(ctx, db, APIKeyPayload+id)
}

// APIKeyPayload prefixes the key ID in the routes notification sent when a key changes.
const APIKeyPayload = "apikey:"

// TouchAPIKey records that the key was used, at most once a minute so that hot keys do not
// turn every request into a write.
func TouchAPIKey(ctx context.Context, db sqlx.ExecerContext, id string) error {
	return exec(ctx, db, false, `
		UPDATE api_keys SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - interval '1 minute')`, id)
}

// ListAPIKeys returns the workspace's keys that are not revoked, oldest first.
func ListAPIKeys(ctx context.Context, db sqlx.QueryerContext, workspaceID string) ([]APIKey, error) {
	out := []APIKey{}
	err := list(ctx, db, &out, `
		SELECT * FROM api_keys WHERE workspace_id = $1 AND revoked_at IS NULL
		ORDER BY created_at, id`, workspaceID)
	return out, err
}

// ErrLastAdminKey is returned by RevokeWorkspaceAPIKey for the workspace's last admin key:
// without it nobody could manage the workspace's keys through the API.
var ErrLastAdminKey = errors.New("the workspace's last admin key")

// RevokeWorkspaceAPIKey revokes a live key of the workspace, in tx, and returns it as it
// was. A key of another workspace, a revoked one or none is ErrNotFound; the last live admin
// key is ErrLastAdminKey. Revocations of one workspace's keys are serialised (on its row),
// so two of them cannot each leave the other's key as the last one.
func RevokeWorkspaceAPIKey(ctx context.Context, tx *sqlx.Tx, workspaceID, id string) (APIKey, error) {
	var k APIKey
	var one int
	if err := get(ctx, tx, &one, `SELECT 1 FROM workspaces WHERE id = $1 FOR UPDATE`, workspaceID); err != nil {
		return k, err
	}
	if err := get(ctx, tx, &k, `
		SELECT * FROM api_keys WHERE workspace_id = $1 AND id = $2 AND revoked_at IS NULL`,
		workspaceID, id); err != nil {
		return k, err
	}
	if k.IsAdmin {
		var others int
		if err := get(ctx, tx, &others, `
			SELECT count(*) FROM api_keys
			WHERE workspace_id = $1 AND id <> $2 AND is_admin AND revoked_at IS NULL`,
			workspaceID, id); err != nil {
			return k, err
		}
		if others == 0 {
			return k, ErrLastAdminKey
		}
	}
	return k, RevokeAPIKey(ctx, tx, id)
}
