package main

import (
	"encoding/json"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/reconcile"
	"github.com/modelplane/modelplane/worker"
)

func newReconcileCmd(logger func() *slog.Logger) *cobra.Command {
	var c serverConfig
	var dbURL string
	cmd := &cobra.Command{
		Use:   "reconcile",
		Short: "Restart, or end with a reason, what the database says runs but Temporal has no workflow for (workers also do this at start)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log := logger()
			db, err := openDB(cmd.Context(), dbURL)
			if err != nil {
				return err
			}
			defer db.Close()
			tc, err := dialTemporal(cmd.Context(), c, log)
			if err != nil {
				return err
			}
			defer tc.Close()
			// The restarted workflows carry modelplane's search attributes, which a worker
			// registers at its start; a cluster no worker has started on lacks them.
			if err := worker.EnsureSearchAttributes(cmd.Context(), tc, c.TemporalNamespace); err != nil {
				return err
			}
			report, err := reconcile.Run(cmd.Context(), db, tc, log)
			enc := json.NewEncoder(cmd.OutOrStdout())
			enc.SetIndent("", "  ")
			if encErr := enc.Encode(report); encErr != nil && err == nil {
				err = encErr
			}
			return err
		},
	}
	databaseFlag(cmd, &dbURL)
	temporalFlags(cmd, &c)
	return cmd
}
