package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/store"
)

// adminWorkspace makes a workspace with an admin key; it returns the workspace and the key.
func adminWorkspace(t *testing.T, f *fixture) (store.Workspace, store.APIKey, string) {
	t.Helper()
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, f.db, "keys-"+modelplane.NewID(6))
	require.NoError(t, err)
	k, text, err := apikey.Create(ctx, f.db, ws.ID, "first admin", true)
	require.NoError(t, err)
	return ws, k, text
}

func keyPrefixes(t *testing.T, r response) map[string]map[string]any {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	out := map[string]map[string]any{}
	for _, k := range r.Body["keys"].([]any) {
		v := k.(map[string]any)
		out[v["prefix"].(string)] = v
	}
	return out
}

func TestAPIKeys_CreateListUseAndDelete(t *testing.T) {
	f := newFixture(t)
	ws, first, admin := adminWorkspace(t, f)
	auth := "Api-Key " + admin

	created := f.send(t, http.MethodPost, "/v1/api_keys", auth, `{"name": "ci", "type": "PERSONAL"}`)
	require.Equal(t, http.StatusOK, created.Status, "%v", created.Body)
	require.Equal(t, "no-store", created.Header.Get("Cache-Control"))
	personal := created.Body["api_key"].(string)
	personalID, _, err := apikey.Parse(personal)
	require.NoError(t, err, "the answer is a usable key")
	require.Len(t, created.Body, 1, "the answer is {api_key} only")

	second := f.send(t, http.MethodPost, "/v1/api_keys", auth, `{"type": "WORKSPACE_MANAGE_ALL", "name": null, "model_ids": null}`)
	require.Equal(t, http.StatusOK, second.Status, "%v", second.Body)
	adminID, _, err := apikey.Parse(second.Body["api_key"].(string))
	require.NoError(t, err)

	keys := keyPrefixes(t, f.do(t, http.MethodGet, "/v1/api_keys", auth))
	require.Len(t, keys, 3)
	require.Equal(t, "WORKSPACE_MANAGE_ALL", keys[first.ID]["type"])
	require.Equal(t, "first admin", keys[first.ID]["name"])
	require.Equal(t, "PERSONAL", keys[personalID]["type"])
	require.Equal(t, "ci", keys[personalID]["name"])
	require.Nil(t, keys[adminID]["name"], "a key made without a name has name null")
	require.Equal(t, ws.Name, keys[personalID]["team_name"])
	require.Nil(t, keys[personalID]["owner"])
	require.Nil(t, keys[personalID]["model_ids"])
	list := f.do(t, http.MethodGet, "/v1/api_keys", auth)
	raw, err := json.Marshal(list.Body)
	require.NoError(t, err)
	require.NotContains(t, string(raw), strings.Split(personal, "_")[2], "a listing never shows a secret")

	// The personal key works and is no admin key.
	require.Equal(t, http.StatusOK, f.do(t, http.MethodGet, "/v1/models", "Api-Key "+personal).Status)
	require.Equal(t, http.StatusForbidden, f.do(t, http.MethodGet, "/v1/api_keys", "Api-Key "+personal).Status)

	gone := f.do(t, http.MethodDelete, "/v1/api_keys/"+personalID, auth)
	require.Equal(t, http.StatusOK, gone.Status, "%v", gone.Body)
	require.Equal(t, map[string]any{"prefix": personalID}, gone.Body)
	r := f.do(t, http.MethodGet, "/v1/models", "Api-Key "+personal)
	require.Equal(t, http.StatusUnauthorized, r.Status, "a deleted key no longer works")
	_, msg := errorCode(t, r)
	require.Contains(t, msg, "revoked")
	require.NotContains(t, keyPrefixes(t, f.do(t, http.MethodGet, "/v1/api_keys", auth)), personalID)

	// Deleting it again, or with the "mp_" of the key text, finds nothing.
	r = f.do(t, http.MethodDelete, "/v1/api_keys/"+personalID, auth)
	require.Equal(t, http.StatusNotFound, r.Status)
	_, msg = errorCode(t, r)
	require.Contains(t, msg, personalID)
	require.Equal(t, http.StatusNotFound, f.do(t, http.MethodDelete, "/v1/api_keys/mp_"+personalID, auth).Status)
	// The "mp_" form names the same key.
	require.Equal(t, http.StatusOK, f.do(t, http.MethodDelete, "/v1/api_keys/mp_"+adminID, auth).Status)
}

func TestAPIKeys_LastAdminKeyIsKept(t *testing.T) {
	f := newFixture(t)
	_, first, admin := adminWorkspace(t, f)
	auth := "Api-Key " + admin
	r := f.do(t, http.MethodDelete, "/v1/api_keys/"+first.ID, auth)
	require.Equal(t, http.StatusUnprocessableEntity, r.Status, "%v", r.Body)
	_, msg := errorCode(t, r)
	require.Contains(t, msg, "last admin key")
	require.Equal(t, http.StatusOK, f.do(t, http.MethodGet, "/v1/api_keys", auth).Status, "the key still works")

	// With a second admin key, the first may go, even by itself.
	other := f.send(t, http.MethodPost, "/v1/api_keys", auth, `{"type": "WORKSPACE_MANAGE_ALL"}`)
	require.Equal(t, http.StatusOK, other.Status)
	require.Equal(t, http.StatusOK, f.do(t, http.MethodDelete, "/v1/api_keys/"+first.ID, auth).Status)
	require.Equal(t, http.StatusUnauthorized, f.do(t, http.MethodGet, "/v1/api_keys", auth).Status)
}

func TestAPIKeys_NeedAnAdminKey(t *testing.T) {
	f := newFixture(t)
	_, k, key := f.workspace(t)
	auth := "Api-Key " + key
	for _, r := range []response{
		f.do(t, http.MethodGet, "/v1/api_keys", auth),
		f.send(t, http.MethodPost, "/v1/api_keys", auth, `{"type": "PERSONAL"}`),
		f.do(t, http.MethodDelete, "/v1/api_keys/"+k.ID, auth),
	} {
		require.Equal(t, http.StatusForbidden, r.Status, "%v", r.Body)
		code, msg := errorCode(t, r)
		require.Equal(t, "permission_denied", code)
		require.Contains(t, msg, "admin key")
	}
	for _, r := range []response{
		f.do(t, http.MethodGet, "/v1/api_keys", ""),
		f.send(t, http.MethodPost, "/v1/api_keys", "", `{"type": "PERSONAL"}`),
		f.do(t, http.MethodDelete, "/v1/api_keys/"+k.ID, ""),
	} {
		require.Equal(t, http.StatusUnauthorized, r.Status)
	}
}

func TestAPIKeys_OtherWorkspacesKeyIsNotFound(t *testing.T) {
	f := newFixture(t)
	_, _, adminA := adminWorkspace(t, f)
	_, keyB, _ := adminWorkspace(t, f)
	r := f.do(t, http.MethodDelete, "/v1/api_keys/"+keyB.ID, "Api-Key "+adminA)
	require.Equal(t, http.StatusNotFound, r.Status)
	require.NotContains(t, keyPrefixes(t, f.do(t, http.MethodGet, "/v1/api_keys", "Api-Key "+adminA)), keyB.ID)
}

func TestAPIKeys_BadCreateBodiesAre400Or422NamingTheField(t *testing.T) {
	f := newFixture(t)
	_, _, admin := adminWorkspace(t, f)
	auth := "Api-Key " + admin
	for _, tc := range []struct {
		body   string
		status int
		field  string
	}{
		{`{}`, http.StatusBadRequest, "type"},
		{`{"type": null}`, http.StatusBadRequest, "type"},
		{`{"type": "ROOT"}`, http.StatusBadRequest, "type"},
		{`{"type": 3}`, http.StatusBadRequest, "type"},
		{`{"type": "PERSONAL", "name": 7}`, http.StatusBadRequest, "name"},
		{`{"type": "PERSONAL", "name": "` + strings.Repeat("n", 256) + `"}`, http.StatusBadRequest, "name"},
		{`{"type": "PERSONAL", "model_ids": "abc"}`, http.StatusBadRequest, "model_ids"},
		{`{"type": "PERSONAL", "model_ids": ["abcdefgh"]}`, http.StatusBadRequest, "model_ids"},
		{`{"type": "PERSONAL", "scope": "all"}`, http.StatusBadRequest, "scope"},
		{`{"type": "WORKSPACE_INVOKE"}`, http.StatusUnprocessableEntity, "type"},
		{`{"type": "WORKSPACE_EXPORT_METRICS", "model_ids": []}`, http.StatusUnprocessableEntity, "type"},
		{`{"type": "WORKSPACE_MANAGE_API_KEYS"}`, http.StatusUnprocessableEntity, "type"},
		{`not json`, http.StatusBadRequest, "JSON"},
	} {
		r := f.send(t, http.MethodPost, "/v1/api_keys", auth, tc.body)
		require.Equal(t, tc.status, r.Status, "%s: %v", tc.body, r.Body)
		_, msg := errorCode(t, r)
		require.Contains(t, msg, tc.field, tc.body)
	}
	keys := keyPrefixes(t, f.do(t, http.MethodGet, "/v1/api_keys", auth))
	require.Len(t, keys, 1, "no refused request made a key")
}
