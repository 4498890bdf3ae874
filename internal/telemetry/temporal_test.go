package telemetry_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/activity"
	"go.temporal.io/sdk/interceptor"
	"go.temporal.io/sdk/testsuite"
	"go.temporal.io/sdk/worker"
	"go.temporal.io/sdk/workflow"

	"github.com/modelplane/modelplane/internal/telemetry"
)

// callAgent stands for an activity that calls an agent: an HTTP call through the traced
// transport.
func callAgent(url string) func(ctx context.Context) error {
	return func(ctx context.Context) error {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, url+"/v1/inventory", nil)
		if err != nil {
			return err
		}
		res, err := (&http.Client{Transport: telemetry.Transport(nil)}).Do(req)
		if err != nil {
			return err
		}
		return res.Body.Close()
	}
}

func deployWorkflow(ctx workflow.Context) error {
	ctx = workflow.WithActivityOptions(ctx, workflow.ActivityOptions{StartToCloseTimeout: time.Minute})
	return workflow.ExecuteActivity(ctx, "CallAgent").Get(ctx, nil)
}

func TestTemporalInterceptors_TraceRunsFromWorkflowThroughActivityToTheAgent(t *testing.T) {
	spans := install(t)
	e := echo.New()
	e.Use(telemetry.Echo(nil))
	e.GET("/v1/inventory", func(c echo.Context) error { return c.NoContent(http.StatusOK) })
	agent := httptest.NewServer(e)
	defer agent.Close()

	interceptors := telemetry.TemporalInterceptors()
	require.Len(t, interceptors, 1, "tracing is on: the interceptor is added")
	wi, ok := interceptors[0].(interceptor.WorkerInterceptor)
	require.True(t, ok, "the client's interceptor also intercepts the worker made from the client")
	var suite testsuite.WorkflowTestSuite
	env := suite.NewTestWorkflowEnvironment()
	env.SetWorkerOptions(worker.Options{Interceptors: []interceptor.WorkerInterceptor{wi}})
	env.RegisterWorkflowWithOptions(deployWorkflow, workflow.RegisterOptions{Name: "Deploy"})
	env.RegisterActivityWithOptions(callAgent(agent.URL), activity.RegisterOptions{Name: "CallAgent"})
	env.ExecuteWorkflow("Deploy")
	require.True(t, env.IsWorkflowCompleted())
	require.NoError(t, env.GetWorkflowError())

	byName := map[string]tracetest.SpanStub{}
	for _, s := range spans.GetSpans() {
		byName[s.Name] = s
	}
	wf, act, server := byName["RunWorkflow:Deploy"], byName["RunActivity:CallAgent"], byName["GET /v1/inventory"]
	require.True(t, wf.SpanContext.IsValid(), "a span runs the workflow; spans: %v", names(spans))
	require.True(t, act.SpanContext.IsValid(), "a span runs the activity; spans: %v", names(spans))
	require.True(t, server.SpanContext.IsValid(), "the agent makes a span; spans: %v", names(spans))
	traceID := wf.SpanContext.TraceID()
	assert.Equal(t, traceID, act.SpanContext.TraceID(), "the activity is in the workflow's trace")
	assert.Equal(t, traceID, server.SpanContext.TraceID(), "the agent's work is in the workflow's trace")
	assert.Equal(t, byName["StartActivity:CallAgent"].SpanContext.SpanID(), act.Parent.SpanID(), "the activity's parent is the workflow's scheduling of it")
	assert.Equal(t, wf.SpanContext.SpanID(), byName["StartActivity:CallAgent"].Parent.SpanID())
}

func names(e *tracetest.InMemoryExporter) []string {
	var out []string
	for _, s := range e.GetSpans() {
		out = append(out, s.Name)
	}
	return out
}
