package worker_test

import (
	"testing"

	"github.com/stretchr/testify/require"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/modelplane/modelplane/worker"
)

func TestConcurrency_OptionsCarryEveryBound(t *testing.T) {
	c := worker.Concurrency{
		MaxConcurrentActivities: 11, MaxConcurrentLocalActivities: 12, MaxConcurrentWorkflowTasks: 13,
		ActivityPollers: 4, WorkflowTaskPollers: 5, ActivitiesPerSecond: 6.5, TaskQueueActivitiesPerSecond: 7.5,
	}
	require.NoError(t, c.Check())
	require.Equal(t, sdkworker.Options{
		MaxConcurrentActivityExecutionSize:      11,
		MaxConcurrentLocalActivityExecutionSize: 12,
		MaxConcurrentWorkflowTaskExecutionSize:  13,
		MaxConcurrentActivityTaskPollers:        4,
		MaxConcurrentWorkflowTaskPollers:        5,
		WorkerActivitiesPerSecond:               6.5,
		TaskQueueActivitiesPerSecond:            7.5,
	}, c.Options())
}

func TestConcurrency_DefaultsPassTheirOwnCheck(t *testing.T) {
	require.NoError(t, worker.DefaultConcurrency().Check())
	require.Zero(t, worker.DefaultConcurrency().TaskQueueActivitiesPerSecond, "the task queue's limit is off by default: setting it turns eager activities off")
}

func TestConcurrency_CheckRefusesWhatTheSDKWouldIgnoreOrPanicOn(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*worker.Concurrency)
		want string
	}{
		{"zero activities", func(c *worker.Concurrency) { c.MaxConcurrentActivities = 0 }, "--max-concurrent-activities"},
		{"zero local activities", func(c *worker.Concurrency) { c.MaxConcurrentLocalActivities = 0 }, "--max-concurrent-local-activities"},
		{"one workflow task", func(c *worker.Concurrency) { c.MaxConcurrentWorkflowTasks = 1 }, "--max-concurrent-workflow-tasks must be at least 2"},
		{"zero activity pollers", func(c *worker.Concurrency) { c.ActivityPollers = 0 }, "--activity-pollers"},
		{"one workflow task poller", func(c *worker.Concurrency) { c.WorkflowTaskPollers = 1 }, "--workflow-task-pollers must be at least 2"},
		{"zero rate", func(c *worker.Concurrency) { c.ActivitiesPerSecond = 0 }, "--activities-per-second"},
		{"negative queue rate", func(c *worker.Concurrency) { c.TaskQueueActivitiesPerSecond = -1 }, "--task-queue-activities-per-second"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := worker.DefaultConcurrency()
			tc.edit(&c)
			err := c.Check()
			require.Error(t, err)
			require.Contains(t, err.Error(), tc.want)
		})
	}
}
