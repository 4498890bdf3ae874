// Package worker wires modelplane's workflows and activities into a Temporal worker and
// prepares the namespace they run in: search attributes and schedules.
package worker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/prometheus/client_golang/prometheus"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/sdk/client"
	"go.temporal.io/sdk/temporal"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/modelplane/modelplane/activities"
	"github.com/modelplane/modelplane/autoscaler"
	"github.com/modelplane/modelplane/reconcile"
	"github.com/modelplane/modelplane/workflows"
	"github.com/modelplane/modelplane/workflows/contract"
)

// New returns a worker on contract.TaskQueue with every workflow and activity registered and
// the default concurrency. It is not started.
func New(c client.Client, acts *activities.Activities) sdkworker.Worker {
	return NewWithConcurrency(c, acts, DefaultConcurrency())
}

// NewWithConcurrency is New with the bounds of conc, which the caller has checked.
func NewWithConcurrency(c client.Client, acts *activities.Activities, conc Concurrency) sdkworker.Worker {
	w := sdkworker.New(c, contract.TaskQueue, conc.Options())
	workflows.Register(w)
	w.RegisterActivity(acts)
	return w
}

// EnsureSearchAttributes registers modelplane's search attributes on the namespace, adding
// only those it lacks, so it is safe at every start and on a cluster shared with others.
func EnsureSearchAttributes(ctx context.Context, c client.Client, namespace string) error {
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: namespace})
	if err != nil {
		return fmt.Errorf("list search attributes: %w", err)
	}
	missing := contract.SearchAttributes()
	for name, typ := range missing {
		if got, ok := have.GetCustomAttributes()[name]; ok {
			if got != typ {
				return fmt.Errorf("search attribute %s exists with type %s, modelplane needs %s", name, got, typ)
			}
			delete(missing, name)
		}
	}
	if len(missing) == 0 {
		return nil
	}
	_, err = c.OperatorService().AddSearchAttributes(ctx, &operatorservice.AddSearchAttributesRequest{
		Namespace: namespace, SearchAttributes: missing,
	})
	if err != nil {
		return fmt.Errorf("add search attributes: %w", err)
	}
	return nil
}

// EnsureSchedules creates the Cleanup schedule, or brings an existing one to the current
// interval and input, so a new release's schedule takes effect at its first start.
func EnsureSchedules(ctx context.Context, c client.Client) error {
	spec := client.ScheduleSpec{Intervals: []client.ScheduleIntervalSpec{{Every: contract.CleanupInterval}}}
	action := &client.ScheduleWorkflowAction{
		ID:        contract.CleanupScheduleID,
		Workflow:  contract.CleanupWorkflowType,
		Args:      []any{contract.DefaultCleanupInput()},
		TaskQueue: contract.TaskQueue,
	}
	_, err := c.ScheduleClient().Create(ctx, client.ScheduleOptions{ID: contract.CleanupScheduleID, Spec: spec, Action: action})
	if errors.Is(err, temporal.ErrScheduleAlreadyRunning) {
		err = c.ScheduleClient().GetHandle(ctx, contract.CleanupScheduleID).Update(ctx, client.ScheduleUpdateOptions{
			DoUpdate: func(in client.ScheduleUpdateInput) (*client.ScheduleUpdate, error) {
				in.Description.Schedule.Spec = &spec
				in.Description.Schedule.Action = action
				return &client.ScheduleUpdate{Schedule: &in.Description.Schedule}, nil
			},
		})
	}
	if err != nil {
		return fmt.Errorf("schedule %s: %w", contract.CleanupScheduleID, err)
	}
	return nil
}

// Run prepares the namespace and runs a worker until ctx is done. Beside it runs the
// autoscaler loop on acts.DB, which leads (and scales) in one worker process at a time, and
// the listener that tells waiting async attempts they are done (on acts.DatabaseURL).
func Run(ctx context.Context, c client.Client, namespace string, acts *activities.Activities, conc Concurrency, log *slog.Logger) error {
	if err := EnsureSearchAttributes(ctx, c, namespace); err != nil {
		return err
	}
	if err := EnsureSchedules(ctx, c); err != nil {
		return err
	}
	activities.StartAsyncListener(acts, log)
	w := NewWithConcurrency(c, acts, conc)
	if err := w.Start(); err != nil {
		activities.StopAsyncListener(acts)
		return fmt.Errorf("start worker: %w", err)
	}
	log.Info("worker started", "task_queue", contract.TaskQueue, "namespace", namespace)
	// The database is the record: what it says runs, but Temporal does not have, is taken up
	// again (or ended) before the worker serves. A failed pass is logged, not fatal: the
	// next start or `modelplane reconcile` makes another.
	if _, err := reconcile.Run(ctx, acts.DB, c, log); err != nil {
		log.Error("reconcile pass failed", "err", err)
	}
	loop := autoscaler.New(autoscaler.Options{
		DB: acts.DB, Temporal: c, Logger: log, Registerer: prometheus.DefaultRegisterer,
	})
	loopDone := make(chan struct{})
	go func() {
		defer close(loopDone)
		_ = loop.Run(ctx) // returns nil when ctx ends; it logs its own errors
	}()
	<-ctx.Done()
	<-loopDone // gives up the leader lock before the caller closes the database
	w.Stop()
	activities.StopAsyncListener(acts)
	return nil
}
