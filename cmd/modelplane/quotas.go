package main

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/jmoiron/sqlx"
	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

func newQuotasCmd() *cobra.Command {
	quotas := &cobra.Command{
		Use:   "quotas",
		Short: "Show and set workspace quotas (talks to PostgreSQL directly; for operators)",
	}
	quotas.AddCommand(newQuotasSetCmd(), newQuotasShowCmd())
	return quotas
}

func newQuotasSetCmd() *cobra.Command {
	var (
		dbURL, workspace, archiveBytes string
		replicas, gpus, asyncRequests  int
	)
	cmd := &cobra.Command{
		Use:   "set --workspace W [--replicas N] [--gpus N] [--async-requests N] [--archive-bytes SIZE]",
		Short: "Set a workspace's quotas; a quota not given keeps its value (the default until one is set)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			f := cmd.Flags()
			if !f.Changed("replicas") && !f.Changed("gpus") && !f.Changed("async-requests") && !f.Changed("archive-bytes") {
				return fmt.Errorf("give at least one of --replicas, --gpus, --async-requests, --archive-bytes")
			}
			for _, n := range []struct {
				flag string
				v    int
			}{{"replicas", replicas}, {"gpus", gpus}, {"async-requests", asyncRequests}} {
				if n.v < 0 {
					return fmt.Errorf("--%s: must be 0 or more, not %d", n.flag, n.v)
				}
			}
			ctx := cmd.Context()
			db, ws, err := openWorkspace(ctx, dbURL, workspace)
			if err != nil {
				return err
			}
			defer db.Close()
			q, err := store.WorkspaceQuotas(ctx, db, ws.ID)
			if err != nil {
				return err
			}
			if f.Changed("replicas") {
				q.Replicas = replicas
			}
			if f.Changed("gpus") {
				q.GPUs = gpus
			}
			if f.Changed("async-requests") {
				q.AsyncRequests = asyncRequests
			}
			if f.Changed("archive-bytes") {
				if q.ArchiveBytes, err = parseBytes(archiveBytes); err != nil {
					return fmt.Errorf("--archive-bytes: %w", err)
				}
			}
			if err := store.SetWorkspaceQuotas(ctx, db, ws.ID, q); err != nil {
				return err
			}
			return printQuotas(cmd, db, ws)
		},
	}
	databaseFlag(cmd, &dbURL)
	f := cmd.Flags()
	f.StringVar(&workspace, "workspace", "default", "the workspace whose quotas to set")
	f.IntVar(&replicas, "replicas", 0, "replicas its deployments may run at once")
	f.IntVar(&gpus, "gpus", 0, "GPUs its replicas may hold at once")
	f.IntVar(&asyncRequests, "async-requests", 0, "async requests it may have queued or in progress")
	f.StringVar(&archiveBytes, "archive-bytes", "", "bytes of archives it may store: bytes, or with a unit (50Gi, 50GiB, 500M)")
	return cmd
}

func newQuotasShowCmd() *cobra.Command {
	var dbURL, workspace string
	cmd := &cobra.Command{
		Use:   "show --workspace W",
		Short: "Show a workspace's quotas and what it holds now",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx := cmd.Context()
			db, ws, err := openWorkspace(ctx, dbURL, workspace)
			if err != nil {
				return err
			}
			defer db.Close()
			return printQuotas(cmd, db, ws)
		},
	}
	databaseFlag(cmd, &dbURL)
	cmd.Flags().StringVar(&workspace, "workspace", "default", "the workspace whose quotas to show")
	return cmd
}

// printQuotas writes the workspace's quotas and usage as a table, saying whether the quotas
// are the defaults.
func printQuotas(cmd *cobra.Command, db sqlx.QueryerContext, ws store.Workspace) error {
	ctx := cmd.Context()
	q, set, err := store.WorkspaceQuotasSet(ctx, db, ws.ID)
	if err != nil {
		return err
	}
	u, err := store.WorkspaceUsage(ctx, db, ws.ID)
	if err != nil {
		return err
	}
	out := cmd.OutOrStdout()
	source := "set by the operator"
	if !set {
		source = "the defaults"
	}
	fmt.Fprintf(out, "workspace %s (%s): quotas are %s\n", ws.Name, ws.ID, source)
	tw := tabwriter.NewWriter(out, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "QUOTA\tLIMIT\tUSED")
	fmt.Fprintf(tw, "replicas\t%d\t%d\n", q.Replicas, u.Replicas)
	fmt.Fprintf(tw, "gpus\t%d\t%d\n", q.GPUs, u.GPUs)
	fmt.Fprintf(tw, "async_requests\t%d\t%d\n", q.AsyncRequests, u.AsyncRequests)
	fmt.Fprintf(tw, "archive_bytes\t%d\t%d\n", q.ArchiveBytes, u.ArchiveBytes)
	return tw.Flush()
}

// parseBytes reads a size: plain bytes (0 included), or an amount with a unit as config.yaml's
// memory takes it (50Gi, 500M), "B" after a binary unit allowed (50GiB).
func parseBytes(s string) (int64, error) {
	s = strings.TrimSpace(s)
	if s == "0" {
		return 0, nil
	}
	if strings.HasSuffix(s, "iB") {
		s = strings.TrimSuffix(s, "B")
	}
	return modelpkg.ParseMemory(s)
}

// openWorkspace opens the database and finds the workspace named name in it; the caller
// closes the database.
func openWorkspace(ctx context.Context, dbURL, name string) (*sqlx.DB, store.Workspace, error) {
	db, err := openDB(ctx, dbURL)
	if err != nil {
		return nil, store.Workspace{}, err
	}
	ws, err := store.WorkspaceByName(ctx, db, name)
	if err != nil {
		db.Close()
		return nil, store.Workspace{}, fmt.Errorf("workspace %q: %w", name, err)
	}
	return db, ws, nil
}
