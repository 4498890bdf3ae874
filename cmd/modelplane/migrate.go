package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"strings"

	"github.com/jmoiron/sqlx"
	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/schema"
	"github.com/modelplane/modelplane/store"
)

// databaseFlag registers --database-url on cmd. Its default is DATABASE_URL, else the URL
// that a running `modelplane dev` recorded in its data directory, else the local server.
func databaseFlag(cmd *cobra.Command, dst *string) {
	cmd.Flags().StringVar(dst, "database-url", defaultDatabaseURL(),
		"PostgreSQL URL (DATABASE_URL; else the one dev recorded in ./.modelplane; else the local server)")
}

func defaultDatabaseURL() string {
	if v := envString(envDatabaseURL, ""); v != "" {
		return v
	}
	dir := envString("MODELPLANE_DATA_DIR", defaultDataDir)
	if b, err := os.ReadFile(filepath.Join(dir, databaseURLFile)); err == nil {
		if u := strings.TrimSpace(string(b)); u != "" {
			return u
		}
	}
	return devstack.DefaultLocalDatabaseURL
}

// openDB connects to PostgreSQL, naming the server (not the password) when it cannot.
func openDB(ctx context.Context, u string) (*sqlx.DB, error) {
	db, err := store.Open(ctx, u)
	if err != nil {
		return nil, fmt.Errorf("postgres at %s: %w", redactURL(u), err)
	}
	return db, nil
}

func redactURL(u string) string {
	parsed, err := url.Parse(u)
	if err != nil {
		return "(database URL)"
	}
	return parsed.Redacted()
}

func newMigrateCmd(logger func() *slog.Logger) *cobra.Command {
	var dbURL string
	cmd := &cobra.Command{
		Use:   "migrate",
		Short: "Apply pending schema migrations (api and dev also do this at start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := openDB(cmd.Context(), dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			applied, err := schema.Migrate(cmd.Context(), db.DB)
			if err != nil {
				return err
			}
			for _, a := range applied {
				fmt.Fprintf(cmd.OutOrStdout(), "applied %d %s\n", a.Version, a.Source)
			}
			current, _, err := schema.Version(cmd.Context(), db.DB)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "schema at version %d\n", current)
			return nil
		},
	}
	databaseFlag(cmd, &dbURL)
	return cmd
}
