package api

import (
	"encoding/json"
	"errors"
	"net/http"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

// MaxSecretValueBytes bounds a secret's value.
const MaxSecretValueBytes = 64 << 10

// SecretsKeySettings names where the secrets key comes from, for the answer of a server that
// has none.
const SecretsKeySettings = "--secrets-key-file (MODELPLANE_SECRETS_KEY_FILE) or MODELPLANE_SECRETS_KEY"

// requireSecretsKey answers 503 when the server was started without a secrets key: it can
// then neither seal nor open a value.
func (s *Server) requireSecretsKey(next echo.HandlerFunc) echo.HandlerFunc {
	return func(c echo.Context) error {
		if s.deps.SecretsKey == nil {
			return Errorf(http.StatusServiceUnavailable,
				"secrets are off: the server has no secrets key; set %s", SecretsKeySettings)
		}
		return next(c)
	}
}

// listSecrets answers the workspace's secrets: names and times, never values.
func (s *Server) listSecrets(c echo.Context) error {
	ctx := c.Request().Context()
	p := principal(c)
	ws, err := store.WorkspaceByID(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	list, err := store.ListSecrets(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	out := apiv1.SecretsV1{Secrets: make([]apiv1.SecretV1, 0, len(list))}
	for _, sec := range list {
		out.Secrets = append(out.Secrets, secretView(sec, ws.Name))
	}
	return c.JSON(http.StatusOK, out)
}

// secretView is the secret's wire view, built from its metadata only.
func secretView(sec store.Secret, team string) apiv1.SecretV1 {
	return apiv1.SecretV1{ID: sec.ID, CreatedAt: sec.CreatedAt.UTC(), Name: sec.Name, TeamName: team}
}

// upsertSecret sets a secret of the workspace (an apiv1.UpsertSecretRequestV1), sealing its
// value, and answers its metadata. Replicas started from now on get the new value; running
// ones keep the one they started with. No message repeats the value.
func (s *Server) upsertSecret(c echo.Context) error {
	if err := requireAdmin(c, "setting a secret"); err != nil {
		return err
	}
	// A value may grow sixfold when JSON escapes it (\u0000).
	// The value is sealed and stored as bytes, so it may hold NUL.
	obj, err := readObjectStoring(c, 6*MaxSecretValueBytes+4096, []string{"value"}, "name", "value")
	if err != nil {
		return err
	}
	var name, value string
	if raw, ok := obj["name"]; !ok || string(raw) == "null" {
		return Errorf(http.StatusBadRequest, "name: required")
	} else if err := json.Unmarshal(raw, &name); err != nil {
		return Errorf(http.StatusBadRequest, "name: must be a string")
	}
	if err := modelpkg.ValidateSecretName(name); err != nil {
		return Errorf(http.StatusBadRequest, "name: %v", err)
	}
	if raw, ok := obj["value"]; !ok || string(raw) == "null" {
		return Errorf(http.StatusBadRequest, "value: required")
	} else if err := json.Unmarshal(raw, &value); err != nil {
		return Errorf(http.StatusBadRequest, "value: must be a string")
	}
	switch {
	case value == "":
		return Errorf(http.StatusBadRequest, "value: must not be empty")
	case len(value) > MaxSecretValueBytes:
		return Errorf(http.StatusRequestEntityTooLarge, "value: %d bytes; a secret holds at most %d", len(value), MaxSecretValueBytes)
	}
	ctx := c.Request().Context()
	p := principal(c)
	ws, err := store.WorkspaceByID(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	sealed, err := s.deps.SecretsKey.Seal(p.WorkspaceID, name, []byte(value))
	if err != nil {
		return err
	}
	var sec store.Secret
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		if sec, err = store.UpsertSecret(ctx, tx, p.WorkspaceID, name, sealed); err != nil {
			return err
		}
		return audit(ctx, tx, c, "", "secret.update", sec.ID, store.JSONMap{"name": name})
	})
	if err != nil {
		return err
	}
	s.log.InfoContext(c.Request().Context(), "secret set", "workspace_id", p.WorkspaceID, "secret", name, "key_id", p.KeyID)
	return c.JSON(http.StatusOK, secretView(sec, ws.Name))
}

// deleteSecret removes a secret of the workspace. Running replicas keep the value they
// started with; a deployment whose config names it fails to start new replicas.
func (s *Server) deleteSecret(c echo.Context) error {
	if err := requireAdmin(c, "deleting a secret"); err != nil {
		return err
	}
	name := c.Param("secret_name")
	if err := modelpkg.ValidateSecretName(name); err != nil {
		return Errorf(http.StatusBadRequest, "secret_name: %v", err)
	}
	ctx := c.Request().Context()
	p := principal(c)
	err := store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		sec, err := store.DeleteSecret(ctx, tx, p.WorkspaceID, name)
		if err != nil {
			return err
		}
		return audit(ctx, tx, c, "", "secret.delete", sec.ID, store.JSONMap{"name": name})
	})
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "secret %q not found", name)
	}
	if err != nil {
		return err
	}
	s.log.InfoContext(c.Request().Context(), "secret deleted", "workspace_id", p.WorkspaceID, "secret", name, "key_id", p.KeyID)
	return c.JSON(http.StatusOK, apiv1.SecretTombstoneV1{Name: name})
}
