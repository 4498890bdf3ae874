package store

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
)

// DashboardSession is a dashboard sign-in: the SHA-256 of the session ID the browser holds,
// the API key it acts as, and the token every change it makes must carry.
type DashboardSession struct {
	IDSHA256    []byte    `db:"id_sha256"`
	APIKeyID    string    `db:"api_key_id"`
	WorkspaceID string    `db:"workspace_id"`
	CSRFToken   string    `db:"csrf_token"`
	CreatedAt   time.Time `db:"created_at"`
	ExpiresAt   time.Time `db:"expires_at"`
	LastSeenAt  time.Time `db:"last_seen_at"`
}

// ActiveSession is a session found with the key it acts as.
type ActiveSession struct {
	DashboardSession
	KeyIsAdmin   bool       `db:"key_is_admin"`
	KeyRevokedAt *time.Time `db:"key_revoked_at"`
}

// CreateDashboardSession stores s; IDSHA256, APIKeyID, WorkspaceID, CSRFToken and ExpiresAt
// must be set.
func CreateDashboardSession(ctx context.Context, db sqlx.ExecerContext, s DashboardSession) error {
	return exec(ctx, db, true, `
		INSERT INTO dashboard_sessions (id_sha256, api_key_id, workspace_id, csrf_token, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, s.IDSHA256, s.APIKeyID, s.WorkspaceID, s.CSRFToken, s.ExpiresAt)
}

// DashboardSessionByHash returns the unexpired session whose ID hashes to idSHA256, with its
// key's admin flag and revocation; ErrNotFound when there is none.
func DashboardSessionByHash(ctx context.Context, db sqlx.QueryerContext, idSHA256 []byte) (ActiveSession, error) {
	var s ActiveSession
	err := get(ctx, db, &s, `
		SELECT s.*, k.is_admin AS key_is_admin, k.revoked_at AS key_revoked_at
		FROM dashboard_sessions s JOIN api_keys k ON k.id = s.api_key_id
		WHERE s.id_sha256 = $1 AND s.expires_at > now()`, idSHA256)
	return s, err
}

// TouchDashboardSession records that the session was used, at most once a minute.
func TouchDashboardSession(ctx context.Context, db sqlx.ExecerContext, idSHA256 []byte) error {
	return exec(ctx, db, false, `
		UPDATE dashboard_sessions SET last_seen_at = now()
		WHERE id_sha256 = $1 AND last_seen_at < now() - interval '1 minute'`, idSHA256)
}

// DeleteDashboardSession ends the session; ending one that is gone is not an error.
func DeleteDashboardSession(ctx context.Context, db sqlx.ExecerContext, idSHA256 []byte) error {
	return exec(ctx, db, false, `DELETE FROM dashboard_sessions WHERE id_sha256 = $1`, idSHA256)
}

// DeleteKeyDashboardSessions ends every session of the key and those that have expired.
func DeleteKeyDashboardSessions(ctx context.Context, db sqlx.ExecerContext, keyID string) error {
	return exec(ctx, db, false, `DELETE FROM dashboard_sessions WHERE api_key_id = $1 OR expires_at < now()`, keyID)
}
