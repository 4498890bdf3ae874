package store

import (
	"context"
	"errors"
	"time"

	"github.com/jmoiron/sqlx"
)

// Upload is a place POST /v1/prepare_model_upload made for one archive of a workspace: its
// key is the spec's s3_key, and ArchiveID is set by the PUT that uploads it.
type Upload struct {
	Key         string     `db:"key"`
	WorkspaceID string     `db:"workspace_id"`
	ArchiveID   *string    `db:"archive_id"`
	ExpiresAt   time.Time  `db:"expires_at"`
	CreatedAt   time.Time  `db:"created_at"`
	UploadedAt  *time.Time `db:"uploaded_at"`
}

// UploadTTL is how long an upload key takes an archive after it was made.
const UploadTTL = 24 * time.Hour

// ErrUploaded is CompleteUpload's answer for a key that holds an archive already.
var ErrUploaded = errors.New("an archive was uploaded to this key already")

// CreateUpload records a new upload key of the workspace that takes an archive until
// expiresAt, and removes keys that expired before anything was uploaded to them.
func CreateUpload(ctx context.Context, db sqlx.ExecerContext, key, workspaceID string, expiresAt time.Time) error {
	if err := exec(ctx, db, false, `DELETE FROM archive_uploads WHERE archive_id IS NULL AND expires_at < now()`); err != nil {
		return err
	}
	return exec(ctx, db, true, `
		INSERT INTO archive_uploads (key, workspace_id, expires_at) VALUES ($1, $2, $3)`, key, workspaceID, expiresAt)
}

// UploadByKey returns one of the workspace's upload keys; another workspace's key, like an
// unknown one, is ErrNotFound.
func UploadByKey(ctx context.Context, db sqlx.QueryerContext, workspaceID, key string) (Upload, error) {
	var u Upload
	err := get(ctx, db, &u, `SELECT * FROM archive_uploads WHERE workspace_id = $1 AND key = $2`, workspaceID, key)
	return u, err
}

// CompleteUpload records the archive uploaded to a key. A key that holds an archive already
// is ErrUploaded, whichever archive it is: a key takes one upload.
func CompleteUpload(ctx context.Context, db sqlx.ExtContext, workspaceID, key, archiveID string) error {
	err := exec(ctx, db, true, `
		UPDATE archive_uploads SET archive_id = $3, uploaded_at = now()
		WHERE workspace_id = $1 AND key = $2 AND archive_id IS NULL`, workspaceID, key, archiveID)
	if !errors.Is(err, ErrNotFound) {
		return err
	}
	if _, err := UploadByKey(ctx, db, workspaceID, key); err != nil {
		return err
	}
	return ErrUploaded
}
