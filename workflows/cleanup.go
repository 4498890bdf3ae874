package workflows

import (
	"time"

	"go.temporal.io/sdk/temporal"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane/activities"
)

// CleanupScheduleID is the Temporal schedule that runs Cleanup.
const CleanupScheduleID = "modelplane-cleanup"

// CleanupInterval is how often the schedule runs Cleanup.
const CleanupInterval = 5 * time.Minute

// CleanupInput says what Cleanup keeps.
type CleanupInput struct {
	// LoadSampleRetention is how long load samples are kept; the autoscaler reads at most
	// an hour back (the longest autoscaling window).
	LoadSampleRetention time.Duration
}

// DefaultCleanupInput keeps load samples for two hours: twice the longest window.
func DefaultCleanupInput() CleanupInput {
	return CleanupInput{LoadSampleRetention: 2 * time.Hour}
}

// CleanupResult reports what one run removed.
type CleanupResult struct {
	LoadSamplesDeleted int64
}

// Cleanup removes data that nothing needs any more. It runs on a schedule; each step is an
// idempotent activity, so an overlapping or repeated run does no harm.
func Cleanup(ctx workflow.Context, in CleanupInput) (CleanupResult, error) {
	if in.LoadSampleRetention <= 0 {
		in = DefaultCleanupInput()
	}
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{
		StartToCloseTimeout: time.Minute,
		RetryPolicy: &temporal.RetryPolicy{
			InitialInterval: time.Second,
			MaximumInterval: 30 * time.Second,
			MaximumAttempts: 5,
		},
	})
	var a *activities.Activities
	var res activities.PruneLoadSamplesResult
	cutoff := workflow.Now(ctx).Add(-in.LoadSampleRetention)
	if err := workflow.ExecuteActivity(ctx, a.PruneLoadSamples,
		activities.PruneLoadSamplesInput{Before: cutoff}).Get(ctx, &res); err != nil {
		return CleanupResult{}, err
	}
	workflow.GetLogger(ctx).Info("cleanup done", "load_samples_deleted", res.Deleted)
	return CleanupResult{LoadSamplesDeleted: res.Deleted}, nil
}
