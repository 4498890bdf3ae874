// Package store is modelplane's PostgreSQL access: plain SQL next to the function that runs
// it, one file per aggregate.
//
// Every function takes a context and a sqlx.ExtContext, so it works the same on the pool and
// inside a transaction opened by WithTx. Errors that callers act on are sentinel values:
// ErrNotFound for a missing row, ErrConflict for a unique or foreign-key violation, and
// ErrConstraint for a write the schema's own rules refuse.
package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

var (
	// ErrNotFound means the row asked for does not exist (or is not visible to the caller).
	ErrNotFound = errors.New("not found")
	// ErrConflict means the write collides with existing data: a name or ID taken, or a
	// reference to a row that does not exist or is still referenced.
	ErrConflict = errors.New("conflict")
	// ErrConstraint means the write breaks one of the schema's rules (a check constraint or
	// trigger), such as removing a model's production environment.
	ErrConstraint = errors.New("refused by a data rule")
	// ErrUnstorable means PostgreSQL cannot store the value given: text or jsonb with NUL
	// (\u0000) or bytes that are not UTF-8, or a value too deeply nested.
	ErrUnstorable = errors.New("content the database cannot store")
)

// Error is a store error that keeps what PostgreSQL said. errors.Is matches its Kind.
type Error struct {
	Kind       error  // ErrConflict, ErrConstraint or ErrUnstorable
	Constraint string // the constraint or index PostgreSQL named, if any
	Detail     string // PostgreSQL's message
}

func (e *Error) Error() string {
	if e.Constraint != "" {
		return fmt.Sprintf("%v: %s (%s)", e.Kind, e.Detail, e.Constraint)
	}
	return fmt.Sprintf("%v: %s", e.Kind, e.Detail)
}

// Unwrap lets errors.Is match the error's kind.
func (e *Error) Unwrap() error { return e.Kind }

// PostgreSQL error classes that map to store errors.
const (
	codeUniqueViolation     = "23505"
	codeForeignKeyViolation = "23503"
	codeExclusionViolation  = "23P01"
	codeCheckViolation      = "23514"
	codeNotNullViolation    = "23502"
	codeInvalidByteSequence = "22021" // NUL or invalid UTF-8 in text
	codeUnsupportedEscape   = "22P05" // \u0000 in jsonb
	codeStatementTooComplex = "54001" // too deeply nested
)

// translate turns driver errors into the store's sentinels and leaves others as they are.
func translate(err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, sql.ErrNoRows) {
		return ErrNotFound
	}
	var pqErr *pq.Error
	if !errors.As(err, &pqErr) {
		return err
	}
	switch string(pqErr.Code) {
	case codeUniqueViolation, codeForeignKeyViolation, codeExclusionViolation:
		return &Error{Kind: ErrConflict, Constraint: pqErr.Constraint, Detail: pqErr.Message}
	case codeCheckViolation, codeNotNullViolation:
		return &Error{Kind: ErrConstraint, Constraint: pqErr.Constraint, Detail: pqErr.Message}
	case codeInvalidByteSequence, codeUnsupportedEscape, codeStatementTooComplex:
		return &Error{Kind: ErrUnstorable, Detail: pqErr.Message}
	}
	return err
}

// Pool limits. database/sql keeps only two idle connections by default, so any concurrency
// above two opens and closes a PostgreSQL backend per query; keeping as many idle as may be
// open avoids that, and the open limit keeps one process from exhausting the server's
// max_connections (100 by default) when several processes share it.
const (
	maxOpenConns    = 20
	connMaxIdleTime = 5 * time.Minute
)

// Open connects to PostgreSQL at url and checks the connection.
func Open(ctx context.Context, url string) (*sqlx.DB, error) {
	db, err := sqlx.Open("postgres", url)
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(maxOpenConns)
	db.SetMaxIdleConns(maxOpenConns)
	db.SetConnMaxIdleTime(connMaxIdleTime)
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return nil, err
	}
	return db, nil
}

// WithTx runs fn in a transaction, committing when fn returns nil and rolling back
// otherwise (also when fn panics).
func WithTx(ctx context.Context, db *sqlx.DB, fn func(tx *sqlx.Tx) error) (err error) {
	tx, err := db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer func() {
		if p := recover(); p != nil {
			_ = tx.Rollback()
			panic(p)
		}
		if err != nil {
			_ = tx.Rollback()
		}
	}()
	if err = fn(tx); err != nil {
		return err
	}
	return translate(tx.Commit())
}

// get runs a query expected to return one row into dest.
func get(ctx context.Context, q sqlx.QueryerContext, dest any, query string, args ...any) error {
	return translate(sqlx.GetContext(ctx, q, dest, query, args...))
}

// list runs a query into a slice.
func list(ctx context.Context, q sqlx.QueryerContext, dest any, query string, args ...any) error {
	return translate(sqlx.SelectContext(ctx, q, dest, query, args...))
}

// exec runs a statement; with mustAffect it answers ErrNotFound when no row changed.
func exec(ctx context.Context, e sqlx.ExecerContext, mustAffect bool, query string, args ...any) error {
	res, err := e.ExecContext(ctx, query, args...)
	if err != nil {
		return translate(err)
	}
	if mustAffect {
		n, err := res.RowsAffected()
		if err != nil {
			return err
		}
		if n == 0 {
			return ErrNotFound
		}
	}
	return nil
}
