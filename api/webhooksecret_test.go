package api_test

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/store"
)

func TestWebhookSecret_GetSaysNoneBeforeTheFirstRotation(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	r := f.do(t, http.MethodGet, "/v1/webhook_secret", "Api-Key "+key)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"exists": false}, r.Body, "no created_at while there is no secret")
}

func TestWebhookSecret_PostMakesThenRotatesAndGetNeverShowsIt(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	m, _, key := f.adminWorkspace(t)

	first := f.do(t, http.MethodPost, "/v1/webhook_secret", "Api-Key "+key)
	require.Equal(t, http.StatusOK, first.Status, "%v", first.Body)
	secret, _ := first.Body["secret"].(string)
	require.True(t, strings.HasPrefix(secret, "whsec_"), "secret %q must start with whsec_", secret)
	require.Equal(t, "no-store", first.Header.Get("Cache-Control"), "the one answer with the secret must not be cached")
	created, err := time.Parse(time.RFC3339Nano, first.Body["created_at"].(string))
	require.NoError(t, err)
	stored, err := store.GetWebhookSecret(ctx, f.db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, stored.Secret, secret, "the answer is the workspace's stored secret")

	got := f.do(t, http.MethodGet, "/v1/webhook_secret", "Bearer "+key)
	require.Equal(t, http.StatusOK, got.Status)
	require.Equal(t, true, got.Body["exists"])
	gotCreated, err := time.Parse(time.RFC3339Nano, got.Body["created_at"].(string))
	require.NoError(t, err)
	require.True(t, created.Equal(gotCreated), "created_at %v, want %v", gotCreated, created)
	require.NotContains(t, got.Body, "secret", "GET must never show the secret")

	second := f.do(t, http.MethodPost, "/v1/webhook_secret", "Api-Key "+key)
	require.Equal(t, http.StatusOK, second.Status)
	require.NotEqual(t, secret, second.Body["secret"], "POST again rotates")
	stored, err = store.GetWebhookSecret(ctx, f.db, m.WorkspaceID)
	require.NoError(t, err)
	require.Equal(t, second.Body["secret"], stored.Secret)
}

func TestWebhookSecret_EachWorkspaceHasItsOwn(t *testing.T) {
	f := newFixture(t)
	_, _, keyA := f.adminWorkspace(t)
	_, _, keyB := f.adminWorkspace(t)
	r := f.do(t, http.MethodPost, "/v1/webhook_secret", "Api-Key "+keyA)
	require.Equal(t, http.StatusOK, r.Status)
	r = f.do(t, http.MethodGet, "/v1/webhook_secret", "Api-Key "+keyB)
	require.Equal(t, http.StatusOK, r.Status)
	require.Equal(t, false, r.Body["exists"], "workspace B must not see A's secret as its own")
}

func TestWebhookSecret_NeedsAKey(t *testing.T) {
	f := newFixture(t)
	for _, method := range []string{http.MethodGet, http.MethodPost} {
		r := f.do(t, method, "/v1/webhook_secret", "")
		require.Equal(t, http.StatusUnauthorized, r.Status, method)
		code, _ := errorCode(t, r)
		require.Equal(t, "unauthenticated", code, method)
	}
}
