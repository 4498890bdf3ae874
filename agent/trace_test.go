package agent_test

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/internal/telemetry"
)

func TestTracing_AgentContinuesTheControlPlanesTrace(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	t.Cleanup(telemetry.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))))
	n := startNode(t, t.TempDir(), "h200")

	// An activity's span, and the agent client called within it.
	ctx, activity := telemetry.Tracer().Start(context.Background(), "RunActivity:StartReplica")
	_, err := agentproto.NewClient(n.url, token).Inventory(ctx)
	require.NoError(t, err)
	activity.End()

	var client, server *tracetest.SpanStub
	got := spans.GetSpans()
	for i, s := range got {
		switch {
		case s.SpanKind == trace.SpanKindClient:
			client = &got[i]
		case s.SpanKind == trace.SpanKindServer && s.Name == "GET /v1/inventory":
			server = &got[i]
		}
	}
	require.NotNil(t, client, "the agent client makes a client span; spans: %v", got)
	require.NotNil(t, server, "the agent makes a server span named by its route; spans: %v", got)
	traceID := activity.SpanContext().TraceID()
	assert.Equal(t, traceID, client.SpanContext.TraceID(), "the client span is in the activity's trace")
	assert.Equal(t, activity.SpanContext().SpanID(), client.Parent.SpanID())
	assert.Equal(t, traceID, server.SpanContext.TraceID(), "the agent's span is in the activity's trace")
	assert.Equal(t, client.SpanContext.SpanID(), server.Parent.SpanID(), "the agent's span is the client span's child, by traceparent")
	assert.True(t, server.Parent.IsRemote())
}
