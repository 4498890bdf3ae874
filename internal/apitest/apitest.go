// Package apitest serves the real management API for tests, on a test database, with a
// workspace, a model and a key to call it with.
package apitest

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
)

// Deps are the API's dependencies on db, with a fresh blob store, metrics registry and
// secrets key.
// MetricsToken is the token Deps's /metrics asks for.
const MetricsToken = "test-metrics-token"

func Deps(t *testing.T, db *sqlx.DB) api.Deps {
	t.Helper()
	blobs, err := blob.NewDir(t.TempDir())
	require.NoError(t, err)
	text, err := secretbox.Generate()
	require.NoError(t, err)
	key, err := secretbox.ParseKey(text)
	require.NoError(t, err)
	return api.Deps{DB: db, Registry: prometheus.NewRegistry(), Blobs: blobs, ScratchDir: t.TempDir(), SecretsKey: key,
		MetricsToken: MetricsToken}
}

// Serve opens the database at dbURL and serves the API on loopback until the test ends.
func Serve(t *testing.T, dbURL string) (*sqlx.DB, string) {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	srv := httptest.NewServer(api.New(Deps(t, db)))
	t.Cleanup(srv.Close)
	return db, srv.URL
}

// Workspace makes a workspace named prefix-<random> with a model "echo" and a (non-admin)
// key; it returns the model, the key's record and its text.
func Workspace(t *testing.T, db *sqlx.DB, prefix string) (store.Model, store.APIKey, string) {
	t.Helper()
	return workspace(t, db, prefix, false)
}

// AdminWorkspace is Workspace with an admin key.
func AdminWorkspace(t *testing.T, db *sqlx.DB, prefix string) (store.Model, store.APIKey, string) {
	t.Helper()
	return workspace(t, db, prefix, true)
}

func workspace(t *testing.T, db *sqlx.DB, prefix string, admin bool) (store.Model, store.APIKey, string) {
	t.Helper()
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, db, prefix+"-"+modelplane.NewID(6))
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "echo")
	require.NoError(t, err)
	k, text, err := apikey.Create(ctx, db, ws.ID, prefix, admin)
	require.NoError(t, err)
	return m, k, text
}
