package worker_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.temporal.io/api/operatorservice/v1"
	"go.temporal.io/api/workflowservice/v1"
	"go.temporal.io/server/temporaltest"

	"github.com/modelplane/modelplane/worker"
	"github.com/modelplane/modelplane/workflows/contract"
)

func TestRegister_CreatesNamespaceWithSearchAttributesOnceThenSetsRetention(t *testing.T) {
	ts := temporaltest.NewServer(temporaltest.WithT(t))
	c := ts.GetDefaultClient()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	const ns = "modelplane-ops"

	r, err := worker.Register(ctx, c, ns, 72*time.Hour)
	require.NoError(t, err)
	require.Equal(t, worker.NamespaceResult{Created: true}, r)
	r, err = worker.Register(ctx, c, ns, 72*time.Hour)
	require.NoError(t, err)
	require.Equal(t, worker.NamespaceResult{}, r, "a second registration must change nothing")

	desc, err := c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	require.NoError(t, err)
	require.Equal(t, 72*time.Hour, desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration())
	have, err := c.OperatorService().ListSearchAttributes(ctx, &operatorservice.ListSearchAttributesRequest{Namespace: ns})
	require.NoError(t, err)
	for name, typ := range contract.SearchAttributes() {
		require.Equal(t, typ, have.GetCustomAttributes()[name], "search attribute %s", name)
	}

	r, err = worker.Register(ctx, c, ns, 24*time.Hour)
	require.NoError(t, err)
	require.Equal(t, worker.NamespaceResult{RetentionChanged: true}, r)
	desc, err = c.WorkflowService().DescribeNamespace(ctx, &workflowservice.DescribeNamespaceRequest{Namespace: ns})
	require.NoError(t, err)
	require.Equal(t, 24*time.Hour, desc.GetConfig().GetWorkflowExecutionRetentionTtl().AsDuration())
}

func TestEnsureNamespace_RefusesNoRetention(t *testing.T) {
	_, err := worker.EnsureNamespace(context.Background(), nil, "ns", 0)
	require.ErrorContains(t, err, "retention must be positive")
}
