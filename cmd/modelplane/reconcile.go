package main

import (
	"encoding/json"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/reconcile"
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
