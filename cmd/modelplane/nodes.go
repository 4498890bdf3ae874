package main

import (
	"errors"
	"fmt"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/nodeauth"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
)

func newNodesCmd() *cobra.Command {
	nodes := &cobra.Command{
		Use:   "nodes",
		Short: "Manage node agents' credentials (talks to PostgreSQL directly; for operators)",
	}
	token := &cobra.Command{
		Use:   "token",
		Short: "Issue, list and revoke node tokens: each node agent's own credential",
	}
	token.AddCommand(newNodeTokenCreateCmd(), newNodeTokenListCmd(), newNodeTokenRevokeCmd())
	nodes.AddCommand(token)
	return nodes
}

func newNodeTokenCreateCmd() *cobra.Command {
	var dbURL, name, keyFile string
	cmd := &cobra.Command{
		Use:   "create --name NODE",
		Short: "Issue a token for one node and print it once (for that agent's --token-file)",
		Long: `Issues a token that reports and downloads archives for the node NAME alone (the agent's
--name), and that the control plane presents back to that agent. Only its SHA-256 is
stored. The token is made from the secrets key, which the API and worker hold: give the
same key here (--secrets-key-file or MODELPLANE_SECRETS_KEY).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			key, err := secretbox.Load(keyFile, os.Getenv(envSecretsKey))
			if err != nil {
				return err
			}
			if key == nil {
				return nodeauth.ErrNoKey
			}
			db, err := openDB(cmd.Context(), dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			_, text, err := nodeauth.Issue(cmd.Context(), db, key, name)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), text)
			return nil
		},
	}
	databaseFlag(cmd, &dbURL)
	cmd.Flags().StringVar(&name, "name", "", "the node's name, as its agent's --name reports it (required)")
	secretsKeyFlag(cmd, &keyFile, "the API and worker hold; node tokens are made from it")
	return cmd
}

func newNodeTokenListCmd() *cobra.Command {
	var dbURL string
	cmd := &cobra.Command{
		Use:   "list",
		Short: "List node tokens (never the tokens themselves)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			db, err := openDB(cmd.Context(), dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			tokens, err := store.ListNodeTokens(cmd.Context(), db)
			if err != nil {
				return err
			}
			w := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(w, "ID\tNODE\tCREATED\tREVOKED")
			for _, t := range tokens {
				revoked := "-"
				if t.RevokedAt != nil {
					revoked = t.RevokedAt.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(w, "%s\t%s\t%s\t%s\n", t.ID, t.NodeName, t.CreatedAt.UTC().Format(time.RFC3339), revoked)
			}
			return w.Flush()
		},
	}
	databaseFlag(cmd, &dbURL)
	return cmd
}

func newNodeTokenRevokeCmd() *cobra.Command {
	var dbURL string
	cmd := &cobra.Command{
		Use:   "revoke TOKEN_ID",
		Short: "Revoke a node token at once: its agent can no longer report or download, nor be called",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			db, err := openDB(cmd.Context(), dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			err = store.RevokeNodeToken(cmd.Context(), db, args[0])
			if errors.Is(err, store.ErrNotFound) {
				return fmt.Errorf("revoke %s: no such node token, or it is revoked already", args[0])
			}
			if err != nil {
				return fmt.Errorf("revoke %s: %w", args[0], err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "revoked %s\n", args[0])
			return nil
		},
	}
	databaseFlag(cmd, &dbURL)
	return cmd
}
