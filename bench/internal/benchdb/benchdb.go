// Package benchdb gives a benchmark a fresh, migrated database holding one workspace, one
// model and an API key of that workspace, as the tests make theirs.
package benchdb

import (
	"context"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/store"
)

// DB is the database and what it holds.
type DB struct {
	*sqlx.DB
	URL     string
	ModelID string
	// Key is the workspace's API key, in full.
	Key  string
	drop func()
}

// Open creates the database; Close drops it.
func Open(ctx context.Context) (_ *DB, err error) {
	u, drop, err := pgtest.Create("bench")
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			drop()
		}
	}()
	if err := pgtest.Migrate(u); err != nil {
		return nil, err
	}
	db, err := store.Open(ctx, u)
	if err != nil {
		return nil, err
	}
	d := &DB{DB: db, URL: u, drop: drop}
	defer func() {
		if err != nil {
			db.Close()
		}
	}()
	ws, _, err := store.EnsureWorkspace(ctx, db, "bench")
	if err != nil {
		return nil, err
	}
	m, err := store.CreateModel(ctx, db, ws.ID, "bench")
	if err != nil {
		return nil, err
	}
	if _, d.Key, err = apikey.Create(ctx, db, ws.ID, "bench", false); err != nil {
		return nil, err
	}
	d.ModelID = m.ID
	return d, nil
}

// Close closes the connections and drops the database.
func (d *DB) Close() {
	d.DB.Close()
	d.drop()
}
