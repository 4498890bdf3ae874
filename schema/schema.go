// Package schema holds modelplane's PostgreSQL migrations and applies them.
//
// Migrations are numbered SQL files embedded in the binary. Applying them takes a
// PostgreSQL advisory lock for the whole run, so processes that start at the same time
// migrate once: the first applies, the others wait and then find nothing to do.
package schema

import (
	"context"
	"database/sql"
	"embed"
	"fmt"
	"io/fs"

	"github.com/pressly/goose/v3"
	"github.com/pressly/goose/v3/lock"
)

//go:embed migrations/*.sql
var migrations embed.FS

// lockID is the advisory lock key that serialises migrators ("modelplane" in ASCII, truncated).
const lockID int64 = 0x6d6f64656c706c61

// Applied is one migration that a run applied.
type Applied struct {
	Version int64
	Source  string
}

// Migrate applies every pending migration to db and reports what it applied; an up-to-date
// database gives an empty list.
func Migrate(ctx context.Context, db *sql.DB) ([]Applied, error) {
	p, err := provider(db)
	if err != nil {
		return nil, err
	}
	results, err := p.Up(ctx)
	if err != nil {
		return nil, fmt.Errorf("migrate: %w", err)
	}
	applied := make([]Applied, 0, len(results))
	for _, r := range results {
		applied = append(applied, Applied{Version: r.Source.Version, Source: r.Source.Path})
	}
	return applied, nil
}

// Version returns the newest applied migration's version and the newest one embedded.
func Version(ctx context.Context, db *sql.DB) (current, latest int64, err error) {
	p, err := provider(db)
	if err != nil {
		return 0, 0, err
	}
	return p.GetVersions(ctx)
}

func provider(db *sql.DB) (*goose.Provider, error) {
	dir, err := fs.Sub(migrations, "migrations")
	if err != nil {
		return nil, err
	}
	// Retry the lock every second for up to five minutes: a concurrent migrator holds it
	// only as long as its migrations take.
	locker, err := lock.NewPostgresSessionLocker(lock.WithLockID(lockID), lock.WithLockTimeout(1, 300))
	if err != nil {
		return nil, err
	}
	return goose.NewProvider(goose.DialectPostgres, db, dir,
		goose.WithSessionLocker(locker),
		goose.WithDisableGlobalRegistry(true),
	)
}
