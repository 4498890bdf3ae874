package main

import (
	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/internal/temporalclient"
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
