package schema_test

import (
	"context"
	"database/sql"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/schema"
)

// freshDB returns a connection to a new empty database dropped when the test ends.
func freshDB(t *testing.T) *sql.DB {
	t.Helper()
	u, drop, err := pgtest.Create("schema")
	require.NoError(t, err)
	t.Cleanup(drop)
	db, err := sql.Open("postgres", u)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return db
}

func tables(t *testing.T, db *sql.DB) []string {
	t.Helper()
	rows, err := db.Query(`SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY table_name`)
	require.NoError(t, err)
	defer rows.Close()
	var names []string
	for rows.Next() {
		var n string
		require.NoError(t, rows.Scan(&n))
		names = append(names, n)
	}
	return names
}

func TestMigrate_EmptyDatabaseGetsEveryTable(t *testing.T) {
	db := freshDB(t)
	applied, err := schema.Migrate(context.Background(), db)
	require.NoError(t, err)
	require.NotEmpty(t, applied, "a fresh database must have migrations applied")

	got := tables(t, db)
	for _, want := range []string{"workspaces", "api_keys", "models", "archives", "deployments",
		"environments", "promotions", "replicas", "nodes", "gpus", "async_requests",
		"audit_events", "load_samples"} {
		require.Contains(t, got, want, "table %s missing after migration", want)
	}

	current, latest, err := schema.Version(context.Background(), db)
	require.NoError(t, err)
	require.Equal(t, latest, current, "database should be at the newest embedded version")
}

func TestMigrate_SecondRunIsNoOp(t *testing.T) {
	db := freshDB(t)
	_, err := schema.Migrate(context.Background(), db)
	require.NoError(t, err)

	again, err := schema.Migrate(context.Background(), db)
	require.NoError(t, err)
	require.Empty(t, again, "second run applied migrations again")
}

func TestMigrate_ConcurrentMigratorsApplyOnce(t *testing.T) {
	u, drop, err := pgtest.Create("schema")
	require.NoError(t, err)
	t.Cleanup(drop)

	const n = 4
	var wg sync.WaitGroup
	results := make([][]schema.Applied, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each migrator has its own pool, as separate processes would.
			db, err := sql.Open("postgres", u)
			if err != nil {
				errs[i] = err
				return
			}
			defer db.Close()
			results[i], errs[i] = schema.Migrate(context.Background(), db)
		}()
	}
	wg.Wait()

	total := 0
	for i := range n {
		require.NoError(t, errs[i], "migrator %d failed", i)
		total += len(results[i])
	}
	db, err := sql.Open("postgres", u)
	require.NoError(t, err)
	defer db.Close()
	// Versions need not be contiguous (branches number their migrations apart), so count
	// the embedded files rather than trust the newest version number.
	files, err := filepath.Glob("migrations/*.sql")
	require.NoError(t, err)
	require.EqualValues(t, len(files), total, "every migration must be applied exactly once across all migrators")

	var recorded int
	require.NoError(t, db.QueryRow(`SELECT count(*) FROM goose_db_version WHERE version_id > 0`).Scan(&recorded))
	require.EqualValues(t, len(files), recorded, "each version must be recorded once")
}
