package worker

import (
	"fmt"

	sdkworker "go.temporal.io/sdk/worker"
)

// The defaults are the SDK's own, written here so that --help shows them.
const (
	DefaultMaxConcurrentActivities      = 1000
	DefaultMaxConcurrentLocalActivities = 1000
	DefaultMaxConcurrentWorkflowTasks   = 1000
	DefaultActivityPollers              = 2
	DefaultWorkflowTaskPollers          = 2
	// DefaultActivitiesPerSecond is the SDK's "no limit".
	DefaultActivitiesPerSecond = 100000
)

// Concurrency bounds what one worker process takes on at once, and how fast it starts
// activities. Each field maps to one field of the SDK's worker.Options.
type Concurrency struct {
	MaxConcurrentActivities      int // activities running at once in this process
	MaxConcurrentLocalActivities int // local activities (the async request's steps) at once
	MaxConcurrentWorkflowTasks   int // workflow tasks being processed at once
	ActivityPollers              int // long polls open for activity tasks
	WorkflowTaskPollers          int // long polls open for workflow tasks
	// ActivitiesPerSecond limits the activities this process starts per second.
	ActivitiesPerSecond float64
	// TaskQueueActivitiesPerSecond, when above zero, asks the server to limit the
	// activities of the whole task queue, across every worker, per second. Zero leaves it
	// unlimited; the SDK turns eager activity dispatch off when it is set.
	TaskQueueActivitiesPerSecond float64
}

// DefaultConcurrency returns the SDK's defaults.
func DefaultConcurrency() Concurrency {
	return Concurrency{
		MaxConcurrentActivities:      DefaultMaxConcurrentActivities,
		MaxConcurrentLocalActivities: DefaultMaxConcurrentLocalActivities,
		MaxConcurrentWorkflowTasks:   DefaultMaxConcurrentWorkflowTasks,
		ActivityPollers:              DefaultActivityPollers,
		WorkflowTaskPollers:          DefaultWorkflowTaskPollers,
		ActivitiesPerSecond:          DefaultActivitiesPerSecond,
	}
}

// Check refuses bounds the SDK would ignore or panic on: it takes a zero as "default" and
// panics on one workflow task slot or poller, since its pollers alternate between the
// sticky and the normal queue.
func (c Concurrency) Check() error {
	for _, f := range []struct {
		name string
		v    int
		min  int
	}{
		{"--max-concurrent-activities", c.MaxConcurrentActivities, 1},
		{"--max-concurrent-local-activities", c.MaxConcurrentLocalActivities, 1},
		{"--max-concurrent-workflow-tasks", c.MaxConcurrentWorkflowTasks, 2},
		{"--activity-pollers", c.ActivityPollers, 1},
		{"--workflow-task-pollers", c.WorkflowTaskPollers, 2},
	} {
		if f.v < f.min {
			return fmt.Errorf("%s must be at least %d, got %d", f.name, f.min, f.v)
		}
	}
	if c.ActivitiesPerSecond <= 0 {
		return fmt.Errorf("--activities-per-second must be positive, got %g", c.ActivitiesPerSecond)
	}
	if c.TaskQueueActivitiesPerSecond < 0 {
		return fmt.Errorf("--task-queue-activities-per-second must not be negative, got %g", c.TaskQueueActivitiesPerSecond)
	}
	return nil
}

// Options returns the SDK's worker options for c.
func (c Concurrency) Options() sdkworker.Options {
	return sdkworker.Options{
		MaxConcurrentActivityExecutionSize:      c.MaxConcurrentActivities,
		MaxConcurrentLocalActivityExecutionSize: c.MaxConcurrentLocalActivities,
		MaxConcurrentWorkflowTaskExecutionSize:  c.MaxConcurrentWorkflowTasks,
		MaxConcurrentActivityTaskPollers:        c.ActivityPollers,
		MaxConcurrentWorkflowTaskPollers:        c.WorkflowTaskPollers,
		WorkerActivitiesPerSecond:               c.ActivitiesPerSecond,
		TaskQueueActivitiesPerSecond:            c.TaskQueueActivitiesPerSecond,
	}
}
