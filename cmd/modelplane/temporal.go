package main

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/spf13/cobra"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/internal/temporalclient"
	"github.com/modelplane/modelplane/internal/temporalschema"
	"github.com/modelplane/modelplane/worker"
)

// temporalTLSFlags adds how a process reaches a frontend that serves TLS or asks for mTLS.
// The variables are the temporal CLI's, so one environment serves both.
func temporalTLSFlags(cmd *cobra.Command, t *temporalclient.TLS) {
	f := cmd.Flags()
	f.BoolVar(&t.Enabled, "temporal-tls", envBool("TEMPORAL_TLS", false), "connect to Temporal over TLS; implied by any other --temporal-tls-* flag (TEMPORAL_TLS)")
	f.StringVar(&t.CAFile, "temporal-tls-ca-file", envString("TEMPORAL_TLS_SERVER_CA_CERT_PATH", ""), "PEM file of the CA that signs the frontend's certificate; empty trusts the system's roots (TEMPORAL_TLS_SERVER_CA_CERT_PATH)")
	f.StringVar(&t.CertFile, "temporal-tls-cert-file", envString("TEMPORAL_TLS_CLIENT_CERT_PATH", ""), "PEM client certificate for a frontend that requires mTLS; read again at each new connection (TEMPORAL_TLS_CLIENT_CERT_PATH)")
	f.StringVar(&t.KeyFile, "temporal-tls-key-file", envString("TEMPORAL_TLS_CLIENT_KEY_PATH", ""), "PEM key of --temporal-tls-cert-file (TEMPORAL_TLS_CLIENT_KEY_PATH)")
	f.StringVar(&t.ServerName, "temporal-tls-server-name", envString("TEMPORAL_TLS_SERVER_NAME", ""), "name the frontend's certificate must carry; empty: the host of --temporal-address (TEMPORAL_TLS_SERVER_NAME)")
}

// workerConcurrencyFlags adds the bounds of what one worker process runs at once. The
// defaults are the Temporal SDK's.
func workerConcurrencyFlags(cmd *cobra.Command, c *worker.Concurrency) {
	f := cmd.Flags()
	f.IntVar(&c.MaxConcurrentActivities, "max-concurrent-activities", envInt("MODELPLANE_MAX_CONCURRENT_ACTIVITIES", worker.DefaultMaxConcurrentActivities), "activities this worker runs at once (MODELPLANE_MAX_CONCURRENT_ACTIVITIES)")
	f.IntVar(&c.MaxConcurrentLocalActivities, "max-concurrent-local-activities", envInt("MODELPLANE_MAX_CONCURRENT_LOCAL_ACTIVITIES", worker.DefaultMaxConcurrentLocalActivities), "local activities (async requests' steps) this worker runs at once (MODELPLANE_MAX_CONCURRENT_LOCAL_ACTIVITIES)")
	f.IntVar(&c.MaxConcurrentWorkflowTasks, "max-concurrent-workflow-tasks", envInt("MODELPLANE_MAX_CONCURRENT_WORKFLOW_TASKS", worker.DefaultMaxConcurrentWorkflowTasks), "workflow tasks this worker processes at once; at least 2 (MODELPLANE_MAX_CONCURRENT_WORKFLOW_TASKS)")
	f.IntVar(&c.ActivityPollers, "activity-pollers", envInt("MODELPLANE_ACTIVITY_POLLERS", worker.DefaultActivityPollers), "long polls this worker keeps open for activity tasks (MODELPLANE_ACTIVITY_POLLERS)")
	f.IntVar(&c.WorkflowTaskPollers, "workflow-task-pollers", envInt("MODELPLANE_WORKFLOW_TASK_POLLERS", worker.DefaultWorkflowTaskPollers), "long polls this worker keeps open for workflow tasks; at least 2 (MODELPLANE_WORKFLOW_TASK_POLLERS)")
	f.Float64Var(&c.ActivitiesPerSecond, "activities-per-second", envFloat("MODELPLANE_ACTIVITIES_PER_SECOND", worker.DefaultActivitiesPerSecond), "activities this worker starts per second at most (MODELPLANE_ACTIVITIES_PER_SECOND)")
	f.Float64Var(&c.TaskQueueActivitiesPerSecond, "task-queue-activities-per-second", envFloat("MODELPLANE_TASK_QUEUE_ACTIVITIES_PER_SECOND", 0), "activities the whole task queue, every worker together, starts per second, enforced by the server; 0 is no limit (MODELPLANE_TASK_QUEUE_ACTIVITIES_PER_SECOND)")
}

// newTemporalCmd groups what an operator runs against their own Temporal cluster before
// modelplane uses it.
func newTemporalCmd(logger func() *slog.Logger) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "temporal",
		Short: "Prepare a Temporal cluster for modelplane: its PostgreSQL schema, the namespace and search attributes",
	}
	cmd.AddCommand(newTemporalSetupSchemaCmd(), newTemporalRegisterCmd(logger))
	return cmd
}

func newTemporalSetupSchemaCmd() *cobra.Command {
	var dbURL, visibilityURL string
	var create bool
	cmd := &cobra.Command{
		Use:   "setup-schema",
		Short: "Create or upgrade the Temporal server's PostgreSQL schema (default and visibility stores)",
		Long: `Runs Temporal's own SQL tool (temporal-sql-tool setup-schema -v 0.0, then update-schema)
with the schema files of the Temporal server modelplane is built with (postgresql/v12), on the
default store's database and the visibility store's. A database already at the latest version
is left as it is, so this is safe at every deploy.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			stores, err := temporalschema.Stores(dbURL, visibilityURL)
			if err != nil {
				return fmt.Errorf("%w: set --database-url", err)
			}
			results, err := temporalschema.Setup(stores, create)
			for _, r := range results {
				switch {
				case r.Created:
					fmt.Fprintf(cmd.OutOrStdout(), "%s: created, schema at version %s\n", r.Database, r.To)
				case r.From == r.To:
					fmt.Fprintf(cmd.OutOrStdout(), "%s: schema at version %s, nothing to do\n", r.Database, r.To)
				default:
					fmt.Fprintf(cmd.OutOrStdout(), "%s: schema from version %q to %s\n", r.Database, r.From, r.To)
				}
			}
			return err
		},
	}
	f := cmd.Flags()
	f.StringVar(&dbURL, "database-url", envString("TEMPORAL_DATABASE_URL", ""), "postgres:// URL of the Temporal server's default store, e.g. postgres://temporal:pw@db:5432/temporal?sslmode=require (TEMPORAL_DATABASE_URL)")
	f.StringVar(&visibilityURL, "visibility-database-url", envString("TEMPORAL_VISIBILITY_DATABASE_URL", ""), "postgres:// URL of the visibility store; empty: --database-url with the database "+temporalschema.DefaultVisibilityDatabase+" (TEMPORAL_VISIBILITY_DATABASE_URL)")
	f.BoolVar(&create, "create-database", envBool("TEMPORAL_CREATE_DATABASE", true), "create the databases when missing; needs CREATEDB (TEMPORAL_CREATE_DATABASE)")
	return cmd
}

func newTemporalRegisterCmd(logger func() *slog.Logger) *cobra.Command {
	var c serverConfig
	var retention, timeout time.Duration
	cmd := &cobra.Command{
		Use:   "register",
		Short: "Create modelplane's namespace if missing and add its search attributes",
		Long: `Registers the namespace with the given retention unless it exists (an existing one gets
that retention, its other settings are left alone), then adds the search attributes modelplane's
workflows carry. Safe to run again; the worker also adds the search attributes at start.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			tc, err := dialUntil(ctx, c.temporal(), logger())
			if err != nil {
				return err
			}
			defer tc.Close()
			r, err := worker.Register(ctx, tc, c.TemporalNamespace, retention)
			if err != nil {
				return err
			}
			switch {
			case r.Created:
				fmt.Fprintf(cmd.OutOrStdout(), "namespace %s created (retention %s)\n", c.TemporalNamespace, retention)
			case r.RetentionChanged:
				fmt.Fprintf(cmd.OutOrStdout(), "namespace %s: retention set to %s\n", c.TemporalNamespace, retention)
			default:
				fmt.Fprintf(cmd.OutOrStdout(), "namespace %s exists (retention %s)\n", c.TemporalNamespace, retention)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "search attributes registered\n")
			return nil
		},
	}
	temporalFlags(cmd, &c)
	cmd.Flags().DurationVar(&retention, "retention", envDuration("MODELPLANE_TEMPORAL_RETENTION", worker.DefaultNamespaceRetention), "how long the namespace keeps closed workflows' histories (MODELPLANE_TEMPORAL_RETENTION)")
	cmd.Flags().DurationVar(&timeout, "timeout", time.Minute, "give up after this long, e.g. while Temporal is still starting")
	return cmd
}

// dialUntil dials Temporal again every second until it answers or ctx ends, so that a deploy
// may run register while the server is still starting. The last error says why.
func dialUntil(ctx context.Context, c temporalclient.Config, log *slog.Logger) (client.Client, error) {
	for {
		attempt, cancel := context.WithTimeout(ctx, 5*time.Second)
		tc, err := temporalclient.Dial(attempt, c, log)
		cancel()
		if err == nil {
			return tc, nil
		}
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(time.Second):
		}
	}
}
