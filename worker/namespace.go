package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	namespacepb "go.temporal.io/api/namespace/v1"
	"go.temporal.io/api/serviceerror"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/sdk/client"
	"google.golang.org/protobuf/types/known/durationpb"
)

// DefaultNamespaceRetention is how long a new namespace keeps closed workflows' histories:
// long enough to look into last week's failed rollout.
const DefaultNamespaceRetention = 7 * 24 * time.Hour

// NamespaceResult says what EnsureNamespace found and did.
type NamespaceResult struct {
	Created          bool // the namespace did not exist
	RetentionChanged bool // it existed with another retention, now set to the one asked
}

// EnsureNamespace registers namespace with the given retention unless it exists, and sets
// the retention of an existing one when it differs. Other settings of an existing namespace
// are left as they are, so it is safe on a cluster shared with others.
func EnsureNamespace(ctx context.Context, c client.Client, namespace string, retention time.Duration) (NamespaceResult, error) {
	if retention <= 0 {
		return NamespaceResult{}, fmt.Errorf("namespace retention must be positive, got %s", retention)
	}
	svc := c.WorkflowService()
	desc, err := svc.DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: namespace})
	var notFound *serviceerror.NamespaceNotFound
	switch {
	case errors.As(err, &notFound):
		_, err = svc.RegisterNamespace(ctx, &workflowservice.RegisterNamespaceRequest{
			Namespace:                        namespace,
			Description:                      "modelplane",
			WorkflowExecutionRetentionPeriod: durationpb.New(retention),
		})
		var exists *serviceerror.NamespaceAlreadyExists
		if errors.As(err, &exists) { // registered by another process since
			return NamespaceResult{}, nil
		}
		if err != nil {
			return NamespaceResult{}, fmt.Errorf("register namespace %s: %w", namespace, err)
		}
		return NamespaceResult{Created: true}, nil
	case err != nil:
		return NamespaceResult{}, fmt.Errorf("describe namespace %s: %w", namespace, err)
	}
	if desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration() == retention {
		return NamespaceResult{}, nil
	}
	_, err = svc.UpdateNamespace(ctx, &workflowservice.UpdateNamespaceRequest{
		Namespace: namespace,
		Config:    &namespacepb.NamespaceConfig{WorkflowExecutionRetentionTtl: durationpb.New(retention)},
	})
	if err != nil {
		return NamespaceResult{}, fmt.Errorf("set retention of namespace %s: %w", namespace, err)
	}
	return NamespaceResult{RetentionChanged: true}, nil
}

// Register prepares namespace for modelplane: the namespace itself, then its search
// attributes. A namespace just registered reaches every frontend's cache only after a
// moment, so the search attributes are retried until ctx ends while it is not found.
func Register(ctx context.Context, c client.Client, namespace string, retention time.Duration) (NamespaceResult, error) {
	r, err := EnsureNamespace(ctx, c, namespace, retention)
	if err != nil {
		return r, err
	}
	for {
		err = EnsureSearchAttributes(ctx, c, namespace)
		var notFound *serviceerror.NamespaceNotFound
		if !errors.As(err, &notFound) {
			return r, err
		}
		select {
		case <-ctx.Done():
			return r, fmt.Errorf("%w (namespace %s not yet visible: %w)", err, namespace, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
}
