package api_test

import (
	"context"
	"net/http"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/store"
)

// memberAndAdmin makes a workspace with its model, a member key and an admin key.
func memberAndAdmin(t *testing.T, f *fixture) (m store.Model, member, admin string) {
	t.Helper()
	m, _, member = f.workspace(t)
	_, admin, err := apikey.Create(context.Background(), f.db, m.WorkspaceID, "admin", true)
	require.NoError(t, err)
	return m, "Api-Key " + member, "Api-Key " + admin
}

func requireNeedsAdmin(t *testing.T, r response, action string) {
	t.Helper()
	require.Equal(t, http.StatusForbidden, r.Status, "%v", r.Body)
	code, msg := errorCode(t, r)
	require.Equal(t, "permission_denied", code)
	require.Contains(t, msg, action+" needs an admin key")
}

func TestRoles_MemberKeyCannotRotateWebhookSecretOrWriteSecretsAdminKeyCan(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m, member, admin := memberAndAdmin(t, f)

	requireNeedsAdmin(t, f.do(t, http.MethodPost, "/v1/webhook_secret", member), "rotating the webhook secret")
	_, err := store.GetWebhookSecret(ctx, f.db, m.WorkspaceID)
	require.ErrorIs(t, err, store.ErrNotFound, "a refused rotation makes no secret")
	requireNeedsAdmin(t, f.send(t, http.MethodPost, "/v1/secrets", member, `{"name": "hf_token", "value": "v"}`), "setting a secret")
	sealed, err := store.SealedSecrets(ctx, f.db, m.WorkspaceID, []string{"hf_token"})
	require.NoError(t, err)
	require.Empty(t, sealed, "a refused write stores nothing")

	r := f.do(t, http.MethodPost, "/v1/webhook_secret", admin)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	r = f.send(t, http.MethodPost, "/v1/secrets", admin, `{"name": "hf_token", "value": "v"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)

	// A member still reads what it needs: whether there is a webhook secret, and the names
	// of the secrets its configs may use.
	r = f.do(t, http.MethodGet, "/v1/webhook_secret", member)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, true, r.Body["exists"])
	r = f.do(t, http.MethodGet, "/v1/secrets", member)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Len(t, r.Body["secrets"], 1)

	requireNeedsAdmin(t, f.do(t, http.MethodDelete, "/v1/secrets/hf_token", member), "deleting a secret")
	require.Equal(t, http.StatusOK, f.do(t, http.MethodDelete, "/v1/secrets/hf_token", admin).Status)
}

func TestRoles_DeletingAModelNeedsAnAdminKey(t *testing.T) {
	f := newCreateFixture(t, 0)
	_, admin, err := apikey.Create(context.Background(), f.db, f.m.WorkspaceID, "admin", true)
	require.NoError(t, err)
	requireNeedsAdmin(t, f.do(t, http.MethodDelete, "/v1/models/"+f.m.ID, f.auth), "deleting a model")
	require.Equal(t, http.StatusOK, f.do(t, http.MethodGet, "/v1/models/"+f.m.ID, f.auth).Status, "the model is still there")
	r := f.do(t, http.MethodDelete, "/v1/models/"+f.m.ID, "Api-Key "+admin)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
}
