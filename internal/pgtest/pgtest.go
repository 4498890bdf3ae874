// Package pgtest gives each test package a fresh PostgreSQL database of its own.
//
// The server comes from MODELPLANE_TEST_DATABASE_URL (default: the local server on
// 127.0.0.1:5432 as user postgres). A package's TestMain calls Run, which creates the
// database, runs the tests and drops it, whatever they did.
package pgtest

import (
	"context"
	"database/sql"
	"fmt"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	_ "github.com/lib/pq" // PostgreSQL driver

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/schema"
)

// AdminURL is the server the test databases are created on.
func AdminURL() string {
	if u := os.Getenv("MODELPLANE_TEST_DATABASE_URL"); u != "" {
		return u
	}
	return "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable"
}

// Run creates a fresh database named after prefix, stores its URL in *dbURL, runs the
// package's tests with migrations applied when migrate is set, and drops the database.
// It returns the exit code for os.Exit.
func Run(m *testing.M, prefix string, migrate bool, dbURL *string) int {
	u, drop, err := Create(prefix)
	if err != nil {
		fmt.Fprintln(os.Stderr, "pgtest:", err)
		return 1
	}
	defer drop()
	if migrate {
		if err := Migrate(u); err != nil {
			fmt.Fprintln(os.Stderr, "pgtest:", err)
			return 1
		}
	}
	*dbURL = u
	return m.Run()
}

// Create makes an empty database and returns its URL and a function that drops it.
func Create(prefix string) (dbURL string, drop func(), err error) {
	admin := AdminURL()
	db, err := sql.Open("postgres", admin)
	if err != nil {
		return "", nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.PingContext(ctx); err != nil {
		_ = db.Close()
		return "", nil, fmt.Errorf("PostgreSQL at %s is not reachable (set MODELPLANE_TEST_DATABASE_URL): %w", admin, err)
	}
	name := "mptest_" + strings.ToLower(prefix) + "_" + modelplane.NewID(8)
	if _, err := db.ExecContext(ctx, `CREATE DATABASE `+name); err != nil {
		_ = db.Close()
		return "", nil, fmt.Errorf("create database %s: %w", name, err)
	}
	parsed, err := url.Parse(admin)
	if err != nil {
		_ = db.Close()
		return "", nil, err
	}
	parsed.Path = "/" + name
	drop = func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if _, err := db.ExecContext(ctx, `DROP DATABASE IF EXISTS `+name+` WITH (FORCE)`); err != nil {
			fmt.Fprintf(os.Stderr, "pgtest: drop database %s: %v\n", name, err)
		}
		_ = db.Close()
	}
	return parsed.String(), drop, nil
}

// Migrate applies modelplane's schema to the database at dbURL.
func Migrate(dbURL string) error {
	db, err := sql.Open("postgres", dbURL)
	if err != nil {
		return err
	}
	defer db.Close()
	_, err = schema.Migrate(context.Background(), db)
	return err
}
