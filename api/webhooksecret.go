package api

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

func (s *Server) getWebhookSecret(c echo.Context) error {
	ws, err := store.GetWebhookSecret(c.Request().Context(), s.deps.DB, principal(c).WorkspaceID)
	if errors.Is(err, store.ErrNotFound) {
		return c.JSON(http.StatusOK, apiv1.WebhookSecretStatusV1{Exists: false})
	}
	if err != nil {
		return err
	}
	created := ws.CreatedAt.UTC()
	return c.JSON(http.StatusOK, apiv1.WebhookSecretStatusV1{Exists: true, CreatedAt: &created})
}

// rotateWebhookSecret makes the workspace's webhook secret, or replaces it: deliveries
// signed after this answer use the new one. It needs an admin key: the secret is what every
// receiver of the workspace's webhooks trusts.
func (s *Server) rotateWebhookSecret(c echo.Context) error {
	if err := requireAdmin(c, "rotating the webhook secret"); err != nil {
		return err
	}
	p := principal(c)
	ws, err := store.RotateWebhookSecret(c.Request().Context(), s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	s.log.InfoContext(c.Request().Context(), "webhook secret rotated", "workspace_id", p.WorkspaceID, "key_id", p.KeyID)
	// The secret is in this answer only: no cache may keep it.
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, apiv1.WebhookSecretV1{Secret: ws.Secret, CreatedAt: ws.CreatedAt.UTC()})
}
