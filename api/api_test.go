package api_test

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/internal/s3test"
	"github.com/modelplane/modelplane/store"
)

var dbURL string

func TestMain(m *testing.M) {
	code := pgtest.Run(m, "api", true, &dbURL)
	s3test.StopShared()
	os.Exit(code)
}

type fixture struct {
	db *sqlx.DB
	e  *echo.Echo
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return &fixture{db: db, e: api.New(apitest.Deps(t, db))}
}

// workspace makes a workspace with a model and a key; it returns the model ID and the key.
func (f *fixture) workspace(t *testing.T) (store.Model, store.APIKey, string) {
	t.Helper()
	return apitest.Workspace(t, f.db, "ws")
}

// adminWorkspace is workspace with an admin key.
func (f *fixture) adminWorkspace(t *testing.T) (store.Model, store.APIKey, string) {
	t.Helper()
	return apitest.AdminWorkspace(t, f.db, "ws")
}

type response struct {
	Status int
	Body   map[string]any
	Header http.Header
}

func (f *fixture) do(t *testing.T, method, path, auth string) response {
	t.Helper()
	req := httptest.NewRequest(method, path, nil)
	if auth != "" {
		req.Header.Set("Authorization", auth)
	}
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	var body map[string]any
	if rec.Body.Len() > 0 && strings.HasPrefix(rec.Header().Get("Content-Type"), "application/json") {
		require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "body: %s", rec.Body.String())
	}
	return response{Status: rec.Code, Body: body, Header: rec.Header()}
}

// errorCode reads API.md's error shape and fails the test if the body is not in it.
func errorCode(t *testing.T, r response) (code, message string) {
	t.Helper()
	e, ok := r.Body["error"].(map[string]any)
	require.True(t, ok, "error response must be {\"error\": {...}}, got %v", r.Body)
	code, _ = e["code"].(string)
	message, _ = e["message"].(string)
	require.NotEmpty(t, code)
	require.NotEmpty(t, message)
	return code, message
}

func TestAuth_RejectsBadKeysWith401(t *testing.T) {
	f := newFixture(t)
	m, k, key := f.workspace(t)
	_, revoked, revokedKey := f.workspace(t)
	require.NoError(t, store.RevokeAPIKey(context.Background(), f.db, revoked.ID))

	id, _, err := apikey.Parse(key)
	require.NoError(t, err)
	require.Equal(t, k.ID, id)
	wrongSecret := "mp_" + id + "_" + strings.Repeat("a", 32)
	unknownID := "mp_" + strings.Repeat("x", 12) + "_" + strings.Repeat("a", 32)

	path := "/v1/models/" + m.ID
	tests := []struct {
		name, auth, wantMessage string
	}{
		{"no key", "", "missing API key"},
		{"unknown scheme", "Basic " + key, "unsupported Authorization scheme"},
		{"malformed key", "Api-Key not-a-key", "malformed API key"},
		{"unknown key id", "Api-Key " + unknownID, "invalid API key"},
		{"wrong secret", "Api-Key " + wrongSecret, "invalid API key"},
		{"revoked key", "Api-Key " + revokedKey, "API key revoked"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := f.do(t, http.MethodGet, path, tt.auth)
			require.Equal(t, http.StatusUnauthorized, r.Status)
			code, msg := errorCode(t, r)
			require.Equal(t, "unauthenticated", code)
			require.Contains(t, msg, tt.wantMessage)
			require.NotEmpty(t, r.Header.Get("WWW-Authenticate"))
		})
	}
}

func TestAuth_AcceptsApiKeyAndBearer(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	for _, auth := range []string{"Api-Key " + key, "Bearer " + key, "api-key " + key} {
		r := f.do(t, http.MethodGet, "/v1/models/"+m.ID, auth)
		require.Equal(t, http.StatusOK, r.Status, "auth %q: %v", strings.Fields(auth)[0], r.Body)
		require.Equal(t, m.ID, r.Body["id"])
		require.Equal(t, "echo", r.Body["name"])
	}
}

func TestAuth_OtherWorkspacesModelIsNotFound(t *testing.T) {
	f := newFixture(t)
	mA, _, _ := f.workspace(t)
	_, _, keyB := f.workspace(t)

	r := f.do(t, http.MethodGet, "/v1/models/"+mA.ID, "Api-Key "+keyB)
	require.Equal(t, http.StatusNotFound, r.Status, "a key of workspace B must not see workspace A's model")
	code, _ := errorCode(t, r)
	require.Equal(t, "not_found", code)

	list := f.do(t, http.MethodGet, "/v1/models", "Api-Key "+keyB)
	require.Equal(t, http.StatusOK, list.Status)
	for _, m := range list.Body["models"].([]any) {
		require.NotEqual(t, mA.ID, m.(map[string]any)["id"], "workspace B's list shows A's model")
	}
}

func TestModels_ListShowsOwnModels(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	r := f.do(t, http.MethodGet, "/v1/models", "Bearer "+key)
	require.Equal(t, http.StatusOK, r.Status)
	models := r.Body["models"].([]any)
	require.Len(t, models, 1)
	got := models[0].(map[string]any)
	require.Equal(t, m.ID, got["id"])
	require.EqualValues(t, 0, got["deployments_count"])
	require.Nil(t, got["production_deployment_id"])
}

func TestUnknownRouteIs404InErrorShape(t *testing.T) {
	f := newFixture(t)
	r := f.do(t, http.MethodGet, "/nope", "")
	require.Equal(t, http.StatusNotFound, r.Status)
	code, _ := errorCode(t, r)
	require.Equal(t, "not_found", code)
}

func TestHealthAndReadiness(t *testing.T) {
	f := newFixture(t)
	require.Equal(t, http.StatusOK, f.do(t, http.MethodGet, "/healthz", "").Status)

	// Without Temporal the API must not claim to be ready.
	r := f.do(t, http.MethodGet, "/readyz", "")
	require.Equal(t, http.StatusServiceUnavailable, r.Status)
	checks := r.Body["checks"].(map[string]any)
	require.Equal(t, "ok", checks["postgres"])
	require.NotEqual(t, "ok", checks["temporal"])
}

func TestMetricsCountRequests(t *testing.T) {
	f := newFixture(t)
	f.do(t, http.MethodGet, "/v1/models", "")
	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+apitest.MetricsToken)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	require.Contains(t, rec.Body.String(), `modelplane_api_requests_total{method="GET",route="/v1/models",status_code="401"} 1`)
}

// The metrics' labels name every workspace's models and deployments: no scrape without the
// metrics token, and an API key is not it.
func TestMetricsNeedTheMetricsToken(t *testing.T) {
	f := newFixture(t)
	_, _, key := f.workspace(t)
	for _, auth := range []string{"", "Bearer wrong-token", "Api-Key " + key, "Bearer " + key, apitest.MetricsToken} {
		r := f.do(t, http.MethodGet, "/metrics", auth)
		require.Equal(t, http.StatusUnauthorized, r.Status, "Authorization %q", auth)
	}
	r := f.do(t, http.MethodGet, "/metrics", "Bearer "+apitest.MetricsToken)
	require.Equal(t, http.StatusOK, r.Status)

	// Empty token: metrics are off, whatever is sent.
	deps := apitest.Deps(t, f.db)
	deps.MetricsToken = ""
	e := api.New(deps)
	for _, auth := range []string{"", "Bearer ", "Bearer " + apitest.MetricsToken} {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Authorization", auth)
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, req)
		require.Equal(t, http.StatusUnauthorized, rec.Code, "Authorization %q", auth)
	}
}

// workspacePrincipal returns the workspace ID of an API key.
func (f *fixture) workspacePrincipal(t *testing.T, key string) (string, string) {
	t.Helper()
	id, _, err := apikey.Parse(key)
	require.NoError(t, err)
	k, err := store.APIKeyByID(context.Background(), f.db, id)
	require.NoError(t, err)
	return k.WorkspaceID, k.ID
}
