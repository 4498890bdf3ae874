package main

import (
	"fmt"
	"regexp"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/store"
)

// workspaceName is the schema's rule for workspace names, checked here to say it plainly.
var workspaceName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)

func newKeysCmd() *cobra.Command {
	keys := &cobra.Command{
		Use:   "keys",
		Short: "Manage API keys (talks to PostgreSQL directly; for operators)",
	}
	keys.AddCommand(newKeysCreateCmd(), newKeysRevokeCmd())
	return keys
}

func newKeysCreateCmd() *cobra.Command {
	var (
		dbURL, workspace, name string
		admin                  bool
	)
	cmd := &cobra.Command{
		Use:   "create",
		Short: "Create an API key (and its workspace if it is new) and print it once",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !workspaceName.MatchString(workspace) {
				return fmt.Errorf("workspace %q: use 1-63 lowercase letters, digits, - or _, starting with a letter or digit", workspace)
			}
			ctx := cmd.Context()
			db, err := openDB(ctx, dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			ws, _, err := store.EnsureWorkspace(ctx, db, workspace)
			if err != nil {
				return fmt.Errorf("workspace %q: %w", workspace, err)
			}
			_, text, err := apikey.Create(ctx, db, ws.ID, name, admin)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), text)
			return nil
		},
	}
	databaseFlag(cmd, &dbURL)
	cmd.Flags().StringVar(&workspace, "workspace", "default", "workspace the key belongs to (created if missing; lowercase letters, digits, - and _)")
	cmd.Flags().StringVar(&name, "name", "", "a label for the key")
	cmd.Flags().BoolVar(&admin, "admin", false, "an admin key: it may also manage API keys, secrets and the webhook secret, delete models and list nodes (API.md, \"Roles\")")
	return cmd
}

func newKeysRevokeCmd() *cobra.Command {
	var dbURL string
	cmd := &cobra.Command{
		Use:   "revoke KEY_ID",
		Short: "Revoke an API key by its ID (the part after mp_, or the whole key)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			id := args[0]
			if kid, _, err := apikey.Parse(id); err == nil {
				id = kid
			}
			db, err := openDB(cmd.Context(), dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			if err := store.RevokeAPIKey(cmd.Context(), db, id); err != nil {
				return fmt.Errorf("revoke %s: %w", id, err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", id)
			return nil
		},
	}
	databaseFlag(cmd, &dbURL)
	return cmd
}
