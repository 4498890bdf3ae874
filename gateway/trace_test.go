package gateway_test

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/internal/telemetry"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
)

// clientTraceparent is a client's own trace: version, trace ID, parent span ID, sampled.
const (
	clientTraceID     = "4bf92f3577b34da6a3ce929d0e0e4736"
	clientTraceparent = "00-" + clientTraceID + "-00f067aa0ba902b7-01"
)

// upstreamHeaders sends a sync request to the passthrough server and returns the headers the
// model server was sent.
func upstreamHeaders(t *testing.T, f *fixture, header ...string) http.Header {
	t.Helper()
	a := f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/production/sync/v1/echo", strings.NewReader(`{}`), header...))
	require.Equal(t, http.StatusOK, a.status, a.body)
	var got seen
	require.NoError(t, json.Unmarshal([]byte(a.body), &got), a.body)
	return got.Header
}

// traceIDOf is the trace ID of a traceparent header, "" when it has none.
func traceIDOf(traceparent string) string {
	parts := strings.Split(traceparent, "-")
	if len(parts) != 4 {
		return ""
	}
	return parts[1]
}

func TestTracing_GatewaySpanReachesModelServerAsTraceparent(t *testing.T) {
	f, _, d := passthroughFixture(t, gateway.Options{}, nil)
	spans := tracetest.NewInMemoryExporter()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))
	t.Cleanup(telemetry.Install(tp))

	t.Run("a new trace", func(t *testing.T) {
		spans.Reset()
		h := upstreamHeaders(t, f)
		got := spans.GetSpans()
		require.Len(t, got, 1, "one span per gateway request")
		span := got[0]
		assert.Equal(t, trace.SpanKindServer, span.SpanKind)
		assert.False(t, span.Parent.IsValid(), "without a traceparent from the client the gateway starts the trace")
		tp := h.Get("Traceparent")
		require.NotEmpty(t, tp, "the model server is sent a traceparent")
		assert.Equal(t, span.SpanContext.TraceID().String(), traceIDOf(tp), "the model server's traceparent is the gateway span's trace")
		assert.Contains(t, tp, span.SpanContext.SpanID().String(), "the model server's parent is the gateway span")
		attrs := spanAttributes(span)
		assert.Equal(t, d.ID, attrs["modelplane.deployment_id"])
		assert.Equal(t, "200", attrs["http.response.status_code"])
	})
	t.Run("the client's trace continues", func(t *testing.T) {
		spans.Reset()
		h := upstreamHeaders(t, f, "Traceparent", clientTraceparent, "Tracestate", "vendor=v1")
		got := spans.GetSpans()
		require.Len(t, got, 1)
		assert.Equal(t, clientTraceID, got[0].SpanContext.TraceID().String(), "the gateway span joins the client's trace")
		assert.Equal(t, "00f067aa0ba902b7", got[0].Parent.SpanID().String(), "the client's span is the gateway span's parent")
		assert.Equal(t, clientTraceID, traceIDOf(h.Get("Traceparent")))
		assert.NotEqual(t, clientTraceparent, h.Get("Traceparent"), "the model server's parent is the gateway span, not the client's")
		assert.Equal(t, "vendor=v1", h.Get("Tracestate"), "tracestate goes on with the trace")
	})
}

func TestTracing_OffInventsNoTraceparentAndPassesTheClientsThrough(t *testing.T) {
	require.False(t, telemetry.On(), "tracing is off unless set up")
	f, _, _ := passthroughFixture(t, gateway.Options{}, nil)
	h := upstreamHeaders(t, f)
	assert.Empty(t, h.Get("Traceparent"), "with tracing off the gateway invents no traceparent")
	h = upstreamHeaders(t, f, "Traceparent", clientTraceparent, "Tracestate", "vendor=v1")
	assert.Equal(t, clientTraceparent, h.Get("Traceparent"), "a client's traceparent passes through untouched")
	assert.Equal(t, "vendor=v1", h.Get("Tracestate"))
}

// spanAttributes is a span's attributes as strings, by name.
func spanAttributes(span tracetest.SpanStub) map[string]string {
	attrs := map[string]string{}
	for _, a := range span.Attributes {
		attrs[string(a.Key)] = a.Value.Emit()
	}
	return attrs
}

func TestTracing_AsyncPredictGetsAServerSpanOfItsModelAndDeployment(t *testing.T) {
	f := newFixture(t, gateway.Options{Temporal: &asyncTemporal{}, MaxAsyncAttempts: -1})
	model := newServer(t, "m", testmodel.Options{})
	d := f.servingDeployment(model.addr())
	spans := tracetest.NewInMemoryExporter()
	t.Cleanup(telemetry.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))))

	a := f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/production/async_predict", strings.NewReader(`{"model_input":1}`),
		"Traceparent", clientTraceparent))
	require.Equal(t, http.StatusCreated, a.status, a.body)
	got := spans.GetSpans()
	require.Len(t, got, 1, "one span for the queueing request")
	span := got[0]
	assert.Equal(t, trace.SpanKindServer, span.SpanKind)
	assert.Equal(t, clientTraceID, span.SpanContext.TraceID().String(), "the queueing request joins the client's trace")
	attrs := spanAttributes(span)
	assert.Equal(t, f.model.ID, attrs["modelplane.model_id"])
	assert.Equal(t, d.ID, attrs["modelplane.deployment_id"])
	assert.Equal(t, modelplane.ProductionEnvironment, attrs["modelplane.environment"])
	assert.Equal(t, "201", attrs["http.response.status_code"])
	assert.Equal(t, "POST", attrs["http.request.method"])
}

func TestTracing_AsyncAttemptSendsTheModelServerATraceparentOfItsOwnSpan(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	model := newAsyncModel(t, 0)
	d := f.servingDeployment(model.addr())
	spans := tracetest.NewInMemoryExporter()
	t.Cleanup(telemetry.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))))

	id := f.queuedRequest(d.ID, `{"i":1}`)
	claim, err := store.ClaimAsyncRequest(context.Background(), f.db, id)
	require.NoError(t, err)
	require.True(t, claim.Claimed, "%+v", claim)
	f.createAttempt(id, d.ID, 1)
	f.doneAttempt(id, 1, 3*time.Second)
	_, h, _ := model.call(id, 1)
	tp := h.Get("Traceparent")
	require.NotEmpty(t, tp, "the model server is sent a traceparent with the async prediction")

	var attempt *tracetest.SpanStub
	for _, s := range spans.GetSpans() {
		if s.SpanContext.TraceID().String() == traceIDOf(tp) {
			attempt = &s
		}
	}
	require.NotNil(t, attempt, "a span of the attempt's trace, among %v", spans.GetSpans())
	assert.Contains(t, tp, attempt.SpanContext.SpanID().String(), "the model server's parent is the attempt's span")
	attrs := spanAttributes(*attempt)
	assert.Equal(t, f.model.ID, attrs["modelplane.model_id"])
	assert.Equal(t, d.ID, attrs["modelplane.deployment_id"])
	assert.Equal(t, id, attrs["modelplane.request_id"])
	assert.Equal(t, "1", attrs["modelplane.attempt"])
	assert.Equal(t, "200", attrs["http.response.status_code"])
}
