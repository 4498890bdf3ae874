package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
)

func newSecretsCmd() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "secrets",
		Short: "Manage your workspace's secrets, which models get by the names their config.yaml's secrets lists",
		Long: "A model package names the secrets it needs in config.yaml (secrets: [hf_token]); each replica\n" +
			"gets their values when it starts: the python runtime as the model's secrets argument, the docker\n" +
			"runtime as files under /secrets, the process runtime as files in $MODELPLANE_SECRETS_DIR. A value\n" +
			"set now reaches replicas started from now on. Values are never shown again.",
	}
	cmd.AddCommand(newSecretsListCmd(), newSecretsSetCmd(), newSecretsDeleteCmd())
	return cmd
}

func newSecretsListCmd() *cobra.Command {
	return listCmd("list", "List the workspace's secrets (names and times, never values)", cobra.NoArgs,
		func(ctx context.Context, c *client.Client, _ []string) ([]apiv1.SecretV1, error) {
			return c.Secrets(ctx)
		},
		func(w io.Writer, list []apiv1.SecretV1) {
			fmt.Fprintln(w, "NAME\tID\tCREATED")
			for _, s := range list {
				fmt.Fprintf(w, "%s\t%s\t%s\n", s.Name, s.ID, s.CreatedAt.UTC().Format(time.RFC3339))
			}
		})
}

func newSecretsSetCmd() *cobra.Command {
	var cfg clientConfig
	cmd := &cobra.Command{
		Use:   "set NAME",
		Short: "Set a secret's value, read from stdin (one trailing newline is dropped)",
		Long: "Reads the value from stdin, so that it stays out of the shell's history and the process list:\n" +
			"  printf %s \"$HF_TOKEN\" | modelplane secrets set hf_token\n" +
			"  modelplane secrets set hf_token < token.txt\n" +
			"One trailing newline (\\n or \\r\\n) is dropped. Replicas started from now on get the new value.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			value, err := readSecretValue(cmd.InOrStdin())
			if err != nil {
				return err
			}
			c, err := cfg.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), readTimeout)
			defer cancel()
			s, err := c.SetSecret(ctx, args[0], value)
			if err != nil {
				return cfg.explain(err)
			}
			if cfg.Output == "json" {
				return printJSON(cmd.OutOrStdout(), s)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "secret %s set; replicas started from now on get it\n", s.Name)
			return err
		},
	}
	addClientFlags(cmd, &cfg)
	return cmd
}

// readSecretValue reads a value from r, without one trailing newline.
func readSecretValue(r io.Reader) (string, error) {
	b, err := io.ReadAll(io.LimitReader(r, api.MaxSecretValueBytes+3))
	if err != nil {
		return "", fmt.Errorf("reading the value from stdin: %w", err)
	}
	value := strings.TrimSuffix(strings.TrimSuffix(string(b), "\n"), "\r")
	switch {
	case value == "":
		return "", errors.New("no value on stdin: pipe it in, e.g. printf %s \"$VALUE\" | modelplane secrets set NAME")
	case len(value) > api.MaxSecretValueBytes:
		return "", fmt.Errorf("the value is over %d bytes, the most a secret holds", api.MaxSecretValueBytes)
	}
	return value, nil
}

func newSecretsDeleteCmd() *cobra.Command {
	var cfg clientConfig
	cmd := &cobra.Command{
		Use:   "delete NAME",
		Short: "Delete a secret; running replicas keep their value, deployments naming it fail to start new ones",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg.client()
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), readTimeout)
			defer cancel()
			if err := c.DeleteSecret(ctx, args[0]); err != nil {
				return cfg.explain(err)
			}
			_, err = fmt.Fprintf(cmd.OutOrStdout(), "secret %s deleted\n", args[0])
			return err
		},
	}
	addClientFlags(cmd, &cfg)
	return cmd
}
