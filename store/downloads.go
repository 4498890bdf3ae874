package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"time"

	"github.com/jmoiron/sqlx"
)

// Download is what a presigned download URL hands out: one of a workspace's archives, under
// a file name.
type Download struct {
	WorkspaceID string    `db:"workspace_id"`
	ArchiveID   string    `db:"archive_id"`
	Filename    string    `db:"filename"`
	ExpiresAt   time.Time `db:"expires_at"`
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// CreateDownload records a download token (only its SHA-256) valid until d.ExpiresAt, and
// removes tokens that have expired.
func CreateDownload(ctx context.Context, db sqlx.ExecerContext, token string, d Download) error {
	if err := exec(ctx, db, false, `DELETE FROM download_tokens WHERE expires_at < now()`); err != nil {
		return err
	}
	return exec(ctx, db, true, `
		INSERT INTO download_tokens (token_sha256, workspace_id, archive_id, filename, expires_at)
		VALUES ($1, $2, $3, $4, $5)`, tokenHash(token), d.WorkspaceID, d.ArchiveID, d.Filename, d.ExpiresAt)
}

// DownloadByToken returns the download a token grants; an unknown or expired token is
// ErrNotFound.
func DownloadByToken(ctx context.Context, db sqlx.QueryerContext, token string) (Download, error) {
	var d Download
	err := get(ctx, db, &d, `
		SELECT workspace_id, archive_id, filename, expires_at FROM download_tokens
		WHERE token_sha256 = $1 AND expires_at > now()`, tokenHash(token))
	return d, err
}
