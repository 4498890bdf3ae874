package api_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/store"
)

// secretValue is a value no answer may carry.
const secretValue = "sv_do_not_echo_4f1c9e"

func raw(t *testing.T, r response) string {
	t.Helper()
	b, err := json.Marshal(r.Body)
	require.NoError(t, err)
	return string(b)
}

func TestSecrets_UpsertListDeleteAndNoAnswerCarriesTheValue(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.adminWorkspace(t)
	auth := "Api-Key " + key

	r := f.send(t, http.MethodPost, "/v1/secrets", auth, `{"name": "hf_token", "value": "`+secretValue+`"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "hf_token", r.Body["name"])
	id, _ := r.Body["id"].(string)
	require.NotEmpty(t, id)
	require.NotEmpty(t, r.Body["created_at"])
	require.NotEmpty(t, r.Body["team_name"])
	require.NotContains(t, raw(t, r), secretValue)

	again := f.send(t, http.MethodPost, "/v1/secrets", auth, `{"name": "hf_token", "value": "rotated-`+secretValue+`"}`)
	require.Equal(t, http.StatusOK, again.Status, "%v", again.Body)
	require.Equal(t, id, again.Body["id"], "an upsert keeps the secret's ID")
	require.Equal(t, r.Body["created_at"], again.Body["created_at"], "an upsert keeps created_at")

	list := f.do(t, http.MethodGet, "/v1/secrets", auth)
	require.Equal(t, http.StatusOK, list.Status, "%v", list.Body)
	secrets, _ := list.Body["secrets"].([]any)
	require.Len(t, secrets, 1, "%v", list.Body)
	require.Equal(t, "hf_token", secrets[0].(map[string]any)["name"])
	require.NotContains(t, raw(t, list), secretValue)

	var sealed []byte
	require.NoError(t, f.db.GetContext(context.Background(), &sealed,
		`SELECT sealed_value FROM workspace_secrets WHERE workspace_id = $1 AND name = 'hf_token'`, m.WorkspaceID))
	require.NotContains(t, string(sealed), secretValue, "the database must hold the value sealed")
	require.NotContains(t, string(sealed), "rotated", "the database must hold the value sealed")

	audit := f.do(t, http.MethodGet, "/v1/audit_logs?event_type_groups=SECRETS&direction=ASC", auth)
	require.Equal(t, http.StatusOK, audit.Status, "%v", audit.Body)
	items, _ := audit.Body["items"].([]any)
	require.Len(t, items, 2, "two upserts: %v", audit.Body)
	data := items[0].(map[string]any)["event_data"].(map[string]any)
	require.Equal(t, map[string]any{"event_type": "SECRET_UPDATED", "secret_id": id, "secret_name": "hf_token"}, data)
	require.NotContains(t, raw(t, audit), secretValue)

	del := f.do(t, http.MethodDelete, "/v1/secrets/hf_token", auth)
	require.Equal(t, http.StatusOK, del.Status, "%v", del.Body)
	require.Equal(t, map[string]any{"name": "hf_token"}, del.Body)
	list = f.do(t, http.MethodGet, "/v1/secrets", auth)
	require.Equal(t, []any{}, list.Body["secrets"])
	del = f.do(t, http.MethodDelete, "/v1/secrets/hf_token", auth)
	require.Equal(t, http.StatusNotFound, del.Status)
	require.Contains(t, message(del), `secret "hf_token" not found`)

	audit = f.do(t, http.MethodGet, "/v1/audit_logs?event_type_groups=SECRETS", auth)
	items, _ = audit.Body["items"].([]any)
	require.Len(t, items, 3, "%v", audit.Body)
	require.Equal(t, "SECRET_DELETED", items[0].(map[string]any)["event_type"])
}

func TestSecrets_RefusesBadInputWithoutEchoingTheValue(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.adminWorkspace(t)
	auth := "Bearer " + key
	long := strings.Repeat("a", 254)
	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"no name", `{"value": "` + secretValue + `"}`, http.StatusBadRequest, "name: required"},
		{"name not a string", `{"name": 3, "value": "` + secretValue + `"}`, http.StatusBadRequest, "name: must be a string"},
		{"name with a space", `{"name": "a b", "value": "` + secretValue + `"}`, http.StatusBadRequest, "only A-Z a-z 0-9 . _ -"},
		{"name with a slash", `{"name": "../x", "value": "` + secretValue + `"}`, http.StatusBadRequest, "only A-Z a-z 0-9 . _ -"},
		{"name dot dot", `{"name": "..", "value": "` + secretValue + `"}`, http.StatusBadRequest, `must not be ".."`},
		{"name too long", `{"name": "` + long + `", "value": "` + secretValue + `"}`, http.StatusBadRequest, "at most 253"},
		{"no value", `{"name": "n"}`, http.StatusBadRequest, "value: required"},
		{"value not a string", `{"name": "n", "value": 12}`, http.StatusBadRequest, "value: must be a string"},
		{"empty value", `{"name": "n", "value": ""}`, http.StatusBadRequest, "value: must not be empty"},
		{"value too large", fmt.Sprintf(`{"name": "n", "value": "%s%s"}`, secretValue, strings.Repeat("x", api.MaxSecretValueBytes)),
			http.StatusRequestEntityTooLarge, "a secret holds at most 65536"},
		{"unknown field", `{"name": "n", "value": "` + secretValue + `", "team": "t"}`, http.StatusBadRequest, "team: unknown field"},
		{"not JSON", `{"name": "n", "value": "` + secretValue, http.StatusBadRequest, "must be a JSON object"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, http.MethodPost, "/v1/secrets", auth, tt.body)
			require.Equal(t, tt.status, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.want)
			require.NotContains(t, raw(t, r), secretValue)
		})
	}
	r := f.do(t, http.MethodDelete, "/v1/secrets/a%20b", auth)
	require.Equal(t, http.StatusBadRequest, r.Status, "%v", r.Body)
	list := f.do(t, http.MethodGet, "/v1/secrets", auth)
	require.Equal(t, []any{}, list.Body["secrets"], "no refused request may store anything")
}

func TestSecrets_AnotherWorkspaceCannotSeeOverwriteOrDelete(t *testing.T) {
	f := newFixture(t)
	mA, _, keyA := f.adminWorkspace(t)
	_, _, keyB := f.adminWorkspace(t)
	r := f.send(t, http.MethodPost, "/v1/secrets", "Api-Key "+keyA, `{"name": "shared_name", "value": "`+secretValue+`"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	idA := r.Body["id"]

	list := f.do(t, http.MethodGet, "/v1/secrets", "Api-Key "+keyB)
	require.Equal(t, []any{}, list.Body["secrets"], "workspace B must not see A's names")
	del := f.do(t, http.MethodDelete, "/v1/secrets/shared_name", "Api-Key "+keyB)
	require.Equal(t, http.StatusNotFound, del.Status, "workspace B must not delete A's secret")

	// B setting the same name makes its own secret; A's value is untouched.
	r = f.send(t, http.MethodPost, "/v1/secrets", "Api-Key "+keyB, `{"name": "shared_name", "value": "b-value"}`)
	require.Equal(t, http.StatusOK, r.Status)
	require.NotEqual(t, idA, r.Body["id"])
	sealed, err := store.SealedSecrets(context.Background(), f.db, mA.WorkspaceID, []string{"shared_name"})
	require.NoError(t, err)
	key := apitest.Deps(t, f.db).SecretsKey // another key: it must not open A's value
	_, err = key.Open(mA.WorkspaceID, "shared_name", sealed["shared_name"])
	require.Error(t, err)
	list = f.do(t, http.MethodGet, "/v1/secrets", "Api-Key "+keyA)
	secrets := list.Body["secrets"].([]any)
	require.Len(t, secrets, 1)
	require.Equal(t, idA, secrets[0].(map[string]any)["id"], "A still has its own secret")
	audit := f.do(t, http.MethodGet, "/v1/audit_logs?event_type_groups=SECRETS", "Api-Key "+keyA)
	require.Len(t, audit.Body["items"], 1, "A's audit log holds only A's events: %v", audit.Body)
}

func TestSecrets_WithoutAKeyAnswer503NamingTheSetting(t *testing.T) {
	f := newFixture(t)
	deps := apitest.Deps(t, f.db)
	deps.SecretsKey = nil
	f.e = api.New(deps)
	_, _, key := f.workspace(t)
	for _, req := range []struct{ method, path, body string }{
		{http.MethodGet, "/v1/secrets", ""},
		{http.MethodPost, "/v1/secrets", `{"name": "n", "value": "` + secretValue + `"}`},
		{http.MethodDelete, "/v1/secrets/n", ""},
	} {
		r := f.send(t, req.method, req.path, "Api-Key "+key, req.body)
		require.Equal(t, http.StatusServiceUnavailable, r.Status, "%s %s: %v", req.method, req.path, r.Body)
		require.Contains(t, message(r), "MODELPLANE_SECRETS_KEY")
		require.Contains(t, message(r), "--secrets-key-file")
	}
	r := f.do(t, http.MethodGet, "/v1/webhook_secret", "Api-Key "+key)
	require.Equal(t, http.StatusOK, r.Status, "the rest of the API works without a secrets key")
	r = f.do(t, http.MethodGet, "/v1/secrets", "")
	require.Equal(t, http.StatusUnauthorized, r.Status, "a request without an API key is refused before the key check")
}
