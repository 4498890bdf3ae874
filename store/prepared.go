package store

import (
	"context"
	"runtime"
	"sync"
	"weak"

	"github.com/jmoiron/sqlx"
)

// The gateways' hot paths (recording async requests, finishing attempts) run the same
// statement hundreds of times a second: prepared, it is parsed once per connection and its
// plan is kept, instead of both at every call. The statements of a pool are kept while the
// pool is reachable, and closed with it.
var (
	preparedMu sync.Mutex
	preparedBy = map[weak.Pointer[sqlx.DB]]map[string]*sqlx.Stmt{}
)

// prepared returns query prepared on db's pool; database/sql prepares it again on each
// connection that runs it.
func prepared(ctx context.Context, db *sqlx.DB, query string) (*sqlx.Stmt, error) {
	key := weak.Make(db)
	preparedMu.Lock()
	defer preparedMu.Unlock()
	stmts, ok := preparedBy[key]
	if !ok {
		stmts = map[string]*sqlx.Stmt{}
		preparedBy[key] = stmts
		runtime.AddCleanup(db, forgetPrepared, key)
	}
	if s, ok := stmts[query]; ok {
		return s, nil
	}
	s, err := db.PreparexContext(ctx, query)
	if err != nil {
		return nil, translate(err)
	}
	stmts[query] = s
	return s, nil
}

// forgetPrepared closes the statements of a pool that is gone.
func forgetPrepared(key weak.Pointer[sqlx.DB]) {
	preparedMu.Lock()
	stmts := preparedBy[key]
	delete(preparedBy, key)
	preparedMu.Unlock()
	for _, s := range stmts {
		_ = s.Close()
	}
}
