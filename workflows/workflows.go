// Package workflows holds modelplane's Temporal workflow definitions; what other packages may
// know of them (names, IDs, inputs, results, search attributes) is package contract.
//
// Workflow code here is deterministic: time comes from workflow.Now, waiting from timers and
// selectors, and every side effect from an activity.
package workflows

import (
	"time"

	"github.com/modelplane/modelplane/workflows/contract"
	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"
)

// activityRetry is how activities that talk to agents, the database or other workflows are
// retried: backing off from a second to half a minute, five tries in all.
var activityRetry = &temporal.RetryPolicy{
	InitialInterval: time.Second, MaximumInterval: 30 * time.Second, MaximumAttempts: 5,
}

// Registry is where workflows are registered: a worker, or a replayer of recorded histories.
type Registry interface {
	RegisterWorkflowWithOptions(w any, options workflow.RegisterOptions)
}

// Register registers every workflow under its contract type name, so that a worker and the
// replay tests run the same workflows by the same names.
func Register(r Registry) {
	r.RegisterWorkflowWithOptions(Deployment, workflow.RegisterOptions{Name: contract.DeploymentWorkflowType})
	r.RegisterWorkflowWithOptions(Promotion, workflow.RegisterOptions{Name: contract.PromotionWorkflowType})
	r.RegisterWorkflowWithOptions(AsyncRequest, workflow.RegisterOptions{Name: contract.AsyncRequestWorkflowType})
	r.RegisterWorkflowWithOptions(Cleanup, workflow.RegisterOptions{Name: contract.CleanupWorkflowType})
}
