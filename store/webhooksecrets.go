package store

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"time"

	"github.com/jmoiron/sqlx"
)

// WebhookSecretPrefix starts every webhook secret, so that one pasted in the wrong place is
// recognised.
const WebhookSecretPrefix = "whsec_"

// WebhookSecret is the key that signs a workspace's webhooks. Unlike an API key it is kept
// as is: the sender needs it to sign.
type WebhookSecret struct {
	WorkspaceID string    `db:"workspace_id"`
	Secret      string    `db:"secret"`
	CreatedAt   time.Time `db:"created_at"`
}

// RotateWebhookSecret gives the workspace a new random webhook secret, replacing the one it
// had, and returns it. Deliveries signed from now on use the new one.
func RotateWebhookSecret(ctx context.Context, db sqlx.ExtContext, workspaceID string) (WebhookSecret, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return WebhookSecret{}, err
	}
	secret := WebhookSecretPrefix + base64.RawURLEncoding.EncodeToString(b)
	var out WebhookSecret
	err := get(ctx, db, &out, `
		INSERT INTO webhook_secrets (workspace_id, secret) VALUES ($1, $2)
		ON CONFLICT (workspace_id) DO UPDATE SET secret = excluded.secret, created_at = now()
		RETURNING workspace_id, secret, created_at`, workspaceID, secret)
	return out, err
}

// GetWebhookSecret returns the workspace's webhook secret, or ErrNotFound when it has none.
func GetWebhookSecret(ctx context.Context, db sqlx.QueryerContext, workspaceID string) (WebhookSecret, error) {
	var out WebhookSecret
	err := get(ctx, db, &out, `
		SELECT workspace_id, secret, created_at FROM webhook_secrets WHERE workspace_id = $1`, workspaceID)
	return out, err
}
