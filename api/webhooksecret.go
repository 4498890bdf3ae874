package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/store"
)

// WebhookSecretStatusV1 is API.md's answer to GET /v1/webhook_secret: whether the workspace
// has a webhook secret and since when, never the secret itself.
type WebhookSecretStatusV1 struct {
	Exists    bool       `json:"exists"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

// WebhookSecretV1 is API.md's answer to POST /v1/webhook_secret: the new secret, shown only
// in this answer.
type WebhookSecretV1 struct {
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
}

func (s *Server) getWebhookSecret(c echo.Context) error {
	ws, err := store.GetWebhookSecret(c.Request().Context(), s.deps.DB, principal(c).WorkspaceID)
	if errors.Is(err, store.ErrNotFound) {
		return c.JSON(http.StatusOK, WebhookSecretStatusV1{Exists: false})
	}
	if err != nil {
		return err
	}
	created := ws.CreatedAt.UTC()
	return c.JSON(http.StatusOK, WebhookSecretStatusV1{Exists: true, CreatedAt: &created})
}

// rotateWebhookSecret makes the workspace's webhook secret, or replaces it: deliveries
// signed after this answer use the new one.
func (s *Server) rotateWebhookSecret(c echo.Context) error {
	p := principal(c)
	ws, err := store.RotateWebhookSecret(c.Request().Context(), s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	s.log.Info("webhook secret rotated", "workspace_id", p.WorkspaceID, "key_id", p.KeyID)
	// The secret is in this answer only: no cache may keep it.
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, WebhookSecretV1{Secret: ws.Secret, CreatedAt: ws.CreatedAt.UTC()})
}
