package store_test

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "store", true, &dbURL)) }

func openDB(t *testing.T) *sqlx.DB {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

// newModel makes a workspace of its own and a model in it.
func newModel(t *testing.T, db *sqlx.DB) store.Model {
	t.Helper()
	ctx := context.Background()
	ws, created, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)
	require.True(t, created)
	m, err := store.CreateModel(ctx, db, ws.ID, "echo")
	require.NoError(t, err)
	return m
}

func TestCreateModel_HasProductionEnvironment(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)

	envs, err := store.ListEnvironments(context.Background(), db, m.ID)
	require.NoError(t, err)
	require.Len(t, envs, 1)
	require.Equal(t, "production", envs[0].Name)
	require.Equal(t, settings.DefaultAutoscalingSettings(), envs[0].AutoscalingSettings)
	require.Equal(t, settings.DefaultPromotionSettings(), envs[0].PromotionSettings)
	require.Regexp(t, `^[a-z0-9]{8}$`, m.ID)
}

func TestModel_CannotExistWithoutProductionEnvironment(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)

	_, err = db.ExecContext(ctx, `INSERT INTO models (id, workspace_id, name) VALUES ($1, $2, 'bare')`, modelplane.NewID(8), ws.ID)
	require.Error(t, err, "a model inserted without its production environment must be refused at commit")
}

func TestEnvironment_SecondProductionIsConflict(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)

	_, err := store.CreateEnvironment(context.Background(), db, store.Environment{
		ModelID: m.ID, Name: modelplane.ProductionEnvironment,
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings(),
	})
	require.ErrorIs(t, err, store.ErrConflict)
}

func TestEnvironment_ProductionCannotBeDeleted(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)

	err := store.DeleteEnvironment(context.Background(), db, m.ID, modelplane.ProductionEnvironment)
	require.ErrorIs(t, err, store.ErrConstraint)

	_, err = db.Exec(`UPDATE environments SET name = 'prod' WHERE model_id = $1`, m.ID)
	require.Error(t, err, "renaming production must be refused")
}

func TestEnvironment_CustomCreatedAndDeleted(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	e := store.Environment{ModelID: m.ID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()}

	_, err := store.CreateEnvironment(ctx, db, e)
	require.NoError(t, err)
	_, err = store.CreateEnvironment(ctx, db, e)
	require.ErrorIs(t, err, store.ErrConflict, "second environment of the same name")

	require.NoError(t, store.DeleteEnvironment(ctx, db, m.ID, "staging"))
	_, err = store.EnvironmentByName(ctx, db, m.ID, "staging")
	require.ErrorIs(t, err, store.ErrNotFound)
	require.ErrorIs(t, store.DeleteEnvironment(ctx, db, m.ID, "staging"), store.ErrNotFound)
}

func TestDeleteModel_RemovesProductionEnvironmentAndDeployments(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, d.ID))

	require.NoError(t, store.DeleteModel(ctx, db, m.WorkspaceID, m.ID))
	envs, err := store.ListEnvironments(ctx, db, m.ID)
	require.NoError(t, err)
	require.Empty(t, envs)
	_, err = store.DeploymentByID(ctx, db, m.ID, d.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestDeployment_PublishedNamesCountUp(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)

	for i, want := range []string{"deployment-1", "deployment-2"} {
		d, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
		require.NoError(t, err, "deployment %d", i)
		require.Equal(t, want, d.Name)
		require.Equal(t, modelplane.DeploymentBuilding, d.Status)
	}
	named, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, Name: "v2-canary"})
	require.NoError(t, err)
	require.Equal(t, "v2-canary", named.Name)

	got, err := store.ModelByID(ctx, db, m.WorkspaceID, m.ID)
	require.NoError(t, err)
	require.Equal(t, 3, got.DeploymentsCount)
}

func TestDeployment_DuplicateNameIsConflict(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	nd := store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, Name: "blue"}

	_, err := store.CreateDeployment(ctx, db, nd)
	require.NoError(t, err)
	_, err = store.CreateDeployment(ctx, db, nd)
	require.ErrorIs(t, err, store.ErrConflict)

	// The same name in another model is fine.
	other := newModel(t, db)
	_, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: other.ID, WorkspaceID: other.WorkspaceID, Name: "blue"})
	require.NoError(t, err)
}

func TestDeployment_RenameToTakenNameIsConflict(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	a, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	_, err = store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, Name: "green"})
	require.NoError(t, err)

	require.ErrorIs(t, store.RenameDeployment(ctx, db, m.ID, a.ID, "green"), store.ErrConflict)
	require.NoError(t, store.RenameDeployment(ctx, db, m.ID, a.ID, "blue"))
}

func TestDeployment_SecondDevelopmentIsConflict(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	dev := store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, IsDevelopment: true}

	d, err := store.CreateDeployment(ctx, db, dev)
	require.NoError(t, err)
	require.Equal(t, "development", d.Name)
	_, err = store.CreateDeployment(ctx, db, dev)
	require.ErrorIs(t, err, store.ErrConflict)

	// The development deployment keeps its name.
	require.ErrorIs(t, store.RenameDeployment(ctx, db, m.ID, d.ID, "dev2"), store.ErrConstraint)

	// Once the old one is deleted, a new development deployment may take its place.
	require.NoError(t, store.MarkDeploymentDeleted(ctx, db, m.ID, d.ID))
	_, err = store.CreateDeployment(ctx, db, dev)
	require.NoError(t, err)
}

func TestDeployment_UnknownModelIsNotFound(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	_, err := store.CreateDeployment(context.Background(), db, store.NewDeployment{ModelID: "zzzzzzzz", WorkspaceID: m.WorkspaceID})
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestDeployment_UnknownArchiveIsConflict(t *testing.T) {
	db := openDB(t)
	m := newModel(t, db)
	archive := "sha256:" + strings.Repeat("0", 63) + "f"
	_, err := store.CreateDeployment(context.Background(), db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, ArchiveID: &archive})
	require.ErrorIs(t, err, store.ErrConflict, "a deployment of an archive that was never uploaded")
}

func TestModelByID_OtherWorkspaceIsNotFound(t *testing.T) {
	db := openDB(t)
	a := newModel(t, db)
	b := newModel(t, db)
	_, err := store.ModelByID(context.Background(), db, b.WorkspaceID, a.ID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestWithTx_RollsBackOnError(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)

	boom := errors.New("boom")
	var modelID string
	err = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		m, err := store.CreateModel(ctx, tx, ws.ID, "doomed")
		require.NoError(t, err)
		modelID = m.ID
		return boom
	})
	require.ErrorIs(t, err, boom)
	_, err = store.ModelByID(ctx, db, ws.ID, modelID)
	require.ErrorIs(t, err, store.ErrNotFound, "the model written inside the failed transaction must be gone")
}

func TestWithTx_RollsBackOnPanic(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)

	var modelID string
	require.Panics(t, func() {
		_ = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
			m, err := store.CreateModel(ctx, tx, ws.ID, "doomed")
			require.NoError(t, err)
			modelID = m.ID
			panic("boom")
		})
	})
	_, err = store.ModelByID(ctx, db, ws.ID, modelID)
	require.ErrorIs(t, err, store.ErrNotFound)
}

func TestWithTx_CommitsOnSuccess(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)

	var m store.Model
	require.NoError(t, store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		m, err = store.CreateModel(ctx, tx, ws.ID, "kept")
		return err
	}))
	_, err = store.ModelByID(ctx, db, ws.ID, m.ID)
	require.NoError(t, err)
}

func TestEnsureWorkspace_IsIdempotent(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	name := "ws-" + modelplane.NewID(6)
	first, created, err := store.EnsureWorkspace(ctx, db, name)
	require.NoError(t, err)
	require.True(t, created)
	second, created, err := store.EnsureWorkspace(ctx, db, name)
	require.NoError(t, err)
	require.False(t, created)
	require.Equal(t, first.ID, second.ID)
}

func TestAPIKey_RevokeAndLookup(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)
	k, err := store.CreateAPIKey(ctx, db, store.APIKey{ID: modelplane.NewID(12), WorkspaceID: ws.ID, SecretSHA256: make([]byte, 32)})
	require.NoError(t, err)
	require.Nil(t, k.RevokedAt)

	require.NoError(t, store.RevokeAPIKey(ctx, db, k.ID))
	got, err := store.APIKeyByID(ctx, db, k.ID)
	require.NoError(t, err)
	require.NotNil(t, got.RevokedAt)
	require.ErrorIs(t, store.RevokeAPIKey(ctx, db, "nosuchkey000"), store.ErrNotFound)
}

func TestNotifyRoutes_ReachesListenerAtCommit(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	l, err := store.Listen(dbURL, store.RoutesChannel, 10*time.Millisecond, time.Second, discardLogger())
	require.NoError(t, err)
	defer l.Close()

	// A notification inside a rolled-back transaction is never delivered.
	_ = store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		require.NoError(t, store.NotifyRoutes(ctx, tx, "rolled-back"))
		return errors.New("abort")
	})
	require.NoError(t, store.WithTx(ctx, db, func(tx *sqlx.Tx) error {
		return store.NotifyRoutes(ctx, tx, "model:abc")
	}))

	select {
	case got := <-l.C:
		require.Equal(t, "model:abc", got)
	case <-time.After(5 * time.Second):
		t.Fatal("no notification within 5s of commit")
	}
}

func TestListener_ReportsReconnectWithEmptyPayload(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	l, err := store.Listen(dbURL, store.RoutesChannel, 10*time.Millisecond, 100*time.Millisecond, discardLogger())
	require.NoError(t, err)
	defer l.Close()
	// Make sure the listener is connected before cutting it off.
	require.NoError(t, store.NotifyRoutes(ctx, db, "hello"))
	require.Equal(t, "hello", receive(t, l))

	// Kill the listener's backend, as a database restart would.
	_, err = db.ExecContext(ctx, `SELECT pg_terminate_backend(pid) FROM pg_stat_activity
		WHERE datname = current_database() AND pid <> pg_backend_pid() AND query LIKE 'LISTEN%'`)
	require.NoError(t, err)
	require.Equal(t, "", receive(t, l), "a reconnect must be announced with an empty payload")

	require.NoError(t, store.NotifyRoutes(ctx, db, "after"))
	require.Equal(t, "after", receive(t, l), "notifications must flow again after the reconnect")
}

func receive(t *testing.T, l *store.Listener) string {
	t.Helper()
	select {
	case got := <-l.C:
		return got
	case <-time.After(10 * time.Second):
		t.Fatal("no notification within 10s")
		return ""
	}
}

func TestDeleteModel_WithAPromotionRemovesEverything(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)
	a, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	b, err := store.CreateDeployment(ctx, db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, db, m.ID, modelplane.ProductionEnvironment, a.ID))
	_, err = db.Exec(`INSERT INTO promotions (id, model_id, environment, source_deployment_id, candidate_deployment_id,
		previous_deployment_id, status, workflow_id) VALUES ($1, $2, 'production', $3, $3, $4, 'SUCCEEDED', 'w')`,
		modelplane.NewID(8), m.ID, b.ID, a.ID)
	require.NoError(t, err)

	require.NoError(t, store.DeleteModel(ctx, db, m.WorkspaceID, m.ID), "a promoted model must be deletable")
	var left int
	require.NoError(t, db.Get(&left, `SELECT count(*) FROM promotions WHERE model_id = $1`, m.ID))
	require.Zero(t, left)
}

func TestTranslate_ContentPostgreSQLCannotStoreIsErrUnstorable(t *testing.T) {
	db := openDB(t)
	ctx := context.Background()
	m := newModel(t, db)

	_, err := store.CreateModel(ctx, db, m.WorkspaceID, "a\x00b")
	require.ErrorIs(t, err, store.ErrUnstorable, "NUL in text")
	_, _, err = store.CreateArchive(ctx, db, store.Archive{WorkspaceID: m.WorkspaceID, ID: "sha256:" + strings.Repeat("0", 64),
		SizeBytes: 1, Config: json.RawMessage(`{"note": "a\u0000b"}`)})
	require.ErrorIs(t, err, store.ErrUnstorable, "NUL in jsonb")
}
