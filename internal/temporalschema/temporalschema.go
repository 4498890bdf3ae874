// Package temporalschema sets up and upgrades the PostgreSQL schema of a Temporal server
// (its default store and its visibility store) with Temporal's own SQL tool and the schema
// files embedded in the server module, so the schema always matches the linked server.
package temporalschema

import (
	"database/sql"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"

	_ "github.com/lib/pq" // to look up and create the databases
	"go.temporal.io/server/common/config"
	"go.temporal.io/server/common/log"
	"go.temporal.io/server/common/persistence/sql/sqlplugin/postgresql"
	"go.temporal.io/server/schema/postgresql/v12"
	toolschema "go.temporal.io/server/tools/common/schema"
	sqltool "go.temporal.io/server/tools/sql"
)

// The embedded schemas, as temporal-sql-tool's --schema-name names them.
const (
	DefaultSchema    = "postgresql/v12/temporal"
	VisibilitySchema = "postgresql/v12/visibility"
)

// The versions the linked server's schema files end at.
const (
	DefaultVersion    = v12.Version
	VisibilityVersion = v12.VisibilityVersion
)

// DefaultVisibilityDatabase is the visibility store's database when only the default
// store's URL is given: Temporal's own docs and images use this name.
const DefaultVisibilityDatabase = "temporal_visibility"

// Store is one database and the schema it gets.
type Store struct {
	URL    string // postgres://user:password@host:port/database?sslmode=...
	Schema string // DefaultSchema or VisibilitySchema
}

// Result is where a store's schema was, and is now.
type Result struct {
	Database string
	Created  bool   // the database did not exist
	From     string // version before; "" when the schema was not set up
	To       string
}

// Stores returns the two stores of a server whose default store is at databaseURL and
// whose visibility store is at visibilityURL; an empty visibilityURL means the same server
// and credentials with the database DefaultVisibilityDatabase.
func Stores(databaseURL, visibilityURL string) ([]Store, error) {
	if databaseURL == "" {
		return nil, errors.New("no database URL for Temporal's default store")
	}
	if visibilityURL == "" {
		u, err := url.Parse(databaseURL)
		if err != nil {
			return nil, fmt.Errorf("database URL: %w", err)
		}
		u.Path = "/" + DefaultVisibilityDatabase
		visibilityURL = u.String()
	}
	return []Store{{URL: databaseURL, Schema: DefaultSchema}, {URL: visibilityURL, Schema: VisibilitySchema}}, nil
}

// SQLConfig is the server's persistence configuration for the PostgreSQL database at rawURL:
// its query parameters (sslmode, sslrootcert, ...) become connect attributes.
func SQLConfig(rawURL string) (*config.SQL, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("database URL: %w", err)
	}
	if u.Scheme != "postgres" && u.Scheme != "postgresql" {
		return nil, fmt.Errorf("database URL: scheme %q, want postgres", u.Scheme)
	}
	db := strings.TrimPrefix(u.Path, "/")
	if db == "" {
		return nil, errors.New("database URL names no database")
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		host = "127.0.0.1"
	}
	if port == "" {
		port = "5432"
	}
	c := &config.SQL{
		PluginName:        postgresql.PluginName,
		DatabaseName:      db,
		ConnectAddr:       net.JoinHostPort(host, port),
		ConnectProtocol:   "tcp",
		User:              u.User.Username(),
		ConnectAttributes: map[string]string{},
	}
	c.Password, _ = u.User.Password()
	for k, v := range u.Query() {
		c.ConnectAttributes[k] = v[len(v)-1]
	}
	return c, nil
}

// Setup brings each store to the linked server's schema: it creates the database when
// createDatabase is set and it is missing, sets up the version tables (temporal-sql-tool
// setup-schema -v 0.0) and applies every versioned change past the current version
// (update-schema --schema-name). On a store already at the latest version it changes
// nothing, so it is safe at every deploy.
func Setup(stores []Store, createDatabase bool) ([]Result, error) {
	var out []Result
	for _, s := range stores {
		r, err := setupOne(s, createDatabase)
		if err != nil {
			return out, fmt.Errorf("temporal schema %s in %s: %w", s.Schema, r.Database, err)
		}
		out = append(out, r)
	}
	return out, nil
}

func setupOne(s Store, createDatabase bool) (Result, error) {
	cfg, err := SQLConfig(s.URL)
	if err != nil {
		return Result{}, err
	}
	r := Result{Database: cfg.DatabaseName}
	if createDatabase {
		if r.Created, err = ensureDatabase(s.URL, cfg.DatabaseName); err != nil {
			return r, err
		}
	}
	logger := log.NewNoopLogger()
	conn, err := sqltool.NewConnection(cfg, logger)
	if err != nil {
		return r, err
	}
	defer conn.Close()
	if v, err := conn.ReadSchemaVersion(); err == nil {
		r.From = v
	}
	if err := toolschema.NewSetupSchemaTask(conn, &toolschema.SetupConfig{InitialVersion: "0.0"}, logger).Run(); err != nil {
		return r, fmt.Errorf("setup-schema: %w", err)
	}
	if err := toolschema.NewUpdateSchemaTask(conn, &toolschema.UpdateConfig{DBName: cfg.DatabaseName, SchemaName: s.Schema}, logger).Run(); err != nil {
		return r, fmt.Errorf("update-schema: %w", err)
	}
	if r.To, err = conn.ReadSchemaVersion(); err != nil {
		return r, fmt.Errorf("read schema version: %w", err)
	}
	return r, nil
}

// ensureDatabase creates the database named in rawURL unless it exists, connecting to the
// server's "postgres" database to do so. It reports whether it created it.
func ensureDatabase(rawURL, name string) (bool, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return false, err
	}
	u.Path = "/postgres"
	db, err := sql.Open("postgres", u.String())
	if err != nil {
		return false, err
	}
	defer db.Close()
	var exists bool
	if err := db.QueryRow(`SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)`, name).Scan(&exists); err != nil {
		return false, fmt.Errorf("look up database %s: %w", name, err)
	}
	if exists {
		return false, nil
	}
	if _, err := db.Exec(`CREATE DATABASE ` + quoteIdent(name)); err != nil {
		return false, fmt.Errorf("create database %s: %w", name, err)
	}
	return true, nil
}

func quoteIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }
