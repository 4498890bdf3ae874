package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strings"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

// maxKeyName bounds an API key's name.
const maxKeyName = 255

// requireAdmin refuses a key that is not an admin key with 403 saying what needed one
// (API.md, "Roles").
func requireAdmin(c echo.Context, what string) error {
	if !principal(c).IsAdmin {
		return Errorf(http.StatusForbidden, "%s needs an admin key (WORKSPACE_MANAGE_ALL); this is a member key (PERSONAL)", what)
	}
	return nil
}

// keyCategory is the spec's name for a modelplane key.
func keyCategory(admin bool) apiv1.APIKeyCategory {
	if admin {
		return apiv1.APIKeyWorkspaceManageAll
	}
	return apiv1.APIKeyPersonal
}

// listAPIKeys answers the workspace's live keys, never their secrets.
func (s *Server) listAPIKeys(c echo.Context) error {
	if err := requireAdmin(c, "listing API keys"); err != nil {
		return err
	}
	ctx := c.Request().Context()
	p := principal(c)
	ws, err := store.WorkspaceByID(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	keys, err := store.ListAPIKeys(ctx, s.deps.DB, p.WorkspaceID)
	if err != nil {
		return err
	}
	out := apiv1.APIKeysV1{Keys: make([]apiv1.APIKeyInfoV1, 0, len(keys))}
	for _, k := range keys {
		v := apiv1.APIKeyInfoV1{Prefix: k.ID, Type: keyCategory(k.IsAdmin), TeamName: &ws.Name,
			CreatedAt: k.CreatedAt.UTC(), LastUsedAt: k.LastUsedAt}
		if k.Name != "" {
			v.Name = &k.Name
		}
		if v.LastUsedAt != nil {
			t := v.LastUsedAt.UTC()
			v.LastUsedAt = &t
		}
		out.Keys = append(out.Keys, v)
	}
	return c.JSON(http.StatusOK, out)
}

// createAPIKey makes a key (an apiv1.CreateAPIKeyRequest) and answers it, the one time it is
// shown. WORKSPACE_MANAGE_ALL makes an admin key, PERSONAL a key that manages and calls the
// workspace's models; the scoped categories are refused, as modelplane cannot hold a key to
// them.
func (s *Server) createAPIKey(c echo.Context) error {
	if err := requireAdmin(c, "creating API keys"); err != nil {
		return err
	}
	obj, err := readObject(c, "name", "type", "model_ids")
	if err != nil {
		return err
	}
	name, err := keyName(obj)
	if err != nil {
		return err
	}
	var category apiv1.APIKeyCategory
	raw, ok := obj["type"]
	if !ok || string(raw) == "null" {
		return Errorf(http.StatusBadRequest, "type: required, one of %s", categoryList())
	}
	if err := json.Unmarshal(raw, &category); err != nil || !slices.Contains(apiv1.APIKeyCategories(), category) {
		return Errorf(http.StatusBadRequest, "type: must be one of %s", categoryList())
	}
	if ids, ok := obj["model_ids"]; ok && string(ids) != "null" {
		var list []string
		if err := json.Unmarshal(ids, &list); err != nil {
			return Errorf(http.StatusBadRequest, "model_ids: must be a list of model IDs or null")
		}
		if len(list) > 0 {
			return Errorf(http.StatusBadRequest, "model_ids: only for %s and %s keys, which modelplane does not make",
				apiv1.APIKeyWorkspaceExportMetrics, apiv1.APIKeyWorkspaceInvoke)
		}
	}
	var admin bool
	switch category {
	case apiv1.APIKeyWorkspaceManageAll:
		admin = true
	case apiv1.APIKeyPersonal:
	default:
		return Errorf(http.StatusUnprocessableEntity,
			"type: modelplane makes %s keys (admin) and %s keys (manage and call the workspace's models), not %s",
			apiv1.APIKeyWorkspaceManageAll, apiv1.APIKeyPersonal, category)
	}
	ctx := c.Request().Context()
	p := principal(c)
	var text string
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		k, t, err := apikey.Create(ctx, tx, p.WorkspaceID, name, admin)
		if err != nil {
			return err
		}
		text = t
		return audit(ctx, tx, c, "", "api_key.create", k.ID, store.JSONMap{"name": name, "admin": admin})
	})
	if err != nil {
		return err
	}
	// The key is in this answer only: no cache may keep it.
	c.Response().Header().Set("Cache-Control", "no-store")
	return c.JSON(http.StatusOK, apiv1.APIKeyV1{APIKey: text})
}

// keyName reads the optional name of a new key.
func keyName(obj map[string]json.RawMessage) (string, error) {
	raw, ok := obj["name"]
	if !ok || string(raw) == "null" {
		return "", nil
	}
	var name string
	if err := json.Unmarshal(raw, &name); err != nil {
		return "", Errorf(http.StatusBadRequest, "name: must be a string or null")
	}
	if len(name) > maxKeyName {
		return "", Errorf(http.StatusBadRequest, "name: at most %d characters", maxKeyName)
	}
	return name, nil
}

func categoryList() string {
	var names []string
	for _, c := range apiv1.APIKeyCategories() {
		names = append(names, string(c))
	}
	return strings.Join(names, ", ")
}

// deleteAPIKey revokes a key of the workspace by its prefix (its ID; the "mp_" before it may
// be sent too). The workspace's last admin key is kept: 422.
func (s *Server) deleteAPIKey(c echo.Context) error {
	if err := requireAdmin(c, "deleting API keys"); err != nil {
		return err
	}
	prefix := c.Param("api_key_prefix")
	id := strings.TrimPrefix(prefix, "mp_")
	ctx := c.Request().Context()
	p := principal(c)
	err := store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		k, err := store.RevokeWorkspaceAPIKey(ctx, tx, p.WorkspaceID, id)
		if err != nil {
			return err
		}
		return audit(ctx, tx, c, "", "api_key.delete", k.ID, store.JSONMap{"name": k.Name, "admin": k.IsAdmin})
	})
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Errorf(http.StatusNotFound, "API key %q not found", prefix)
	case errors.Is(err, store.ErrLastAdminKey):
		return Errorf(http.StatusUnprocessableEntity,
			"API key %s is the workspace's last admin key; create another admin key before deleting it", id)
	case err != nil:
		return err
	}
	return c.JSON(http.StatusOK, apiv1.APIKeyTombstoneV1{Prefix: id})
}
