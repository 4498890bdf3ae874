package gateway

import (
	"net/http"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelplane/modelplane/internal/telemetry"
)

// traceRequest continues the trace the client's traceparent names (or starts one) with a
// server span for the request, and sets the span's traceparent and tracestate in r's headers,
// which go on to the model server. With tracing off it does nothing and returns a nil span:
// a client's trace headers then reach the model server as they came, and none is invented.
func traceRequest(r *http.Request) (*http.Request, trace.Span) {
	return startSpan(r, "inference "+r.Method, trace.SpanKindServer)
}

// traceAttempt starts the span of the prediction the gateway sends for an async attempt: a
// trace of its own (the queueing request's ended long ago), whose traceparent the model server
// is sent as a client's would be. With tracing off it does nothing and returns a nil span.
func traceAttempt(r *http.Request, requestID string, attempt int) (*http.Request, trace.Span) {
	return startSpan(r, "async attempt", trace.SpanKindClient,
		attribute.String("modelplane.request_id", requestID), attribute.Int("modelplane.attempt", attempt))
}

// startSpan starts a span for r as a child of the trace r's headers name, if any, and sets
// its traceparent and tracestate in r's headers.
func startSpan(r *http.Request, name string, kind trace.SpanKind, attrs ...attribute.KeyValue) (*http.Request, trace.Span) {
	if !telemetry.On() {
		return r, nil
	}
	prop := otel.GetTextMapPropagator()
	ctx := prop.Extract(r.Context(), propagation.HeaderCarrier(r.Header))
	attrs = append([]attribute.KeyValue{attribute.String("http.request.method", r.Method), attribute.String("url.path", r.URL.Path)}, attrs...)
	ctx, span := telemetry.Tracer().Start(ctx, name, trace.WithSpanKind(kind), trace.WithAttributes(attrs...))
	prop.Inject(ctx, propagation.HeaderCarrier(r.Header))
	return r.WithContext(ctx), span
}

// endSpan records what the request came to and ends the span; a nil span is tracing off.
func endSpan(span trace.Span, l requestLabels, w *statusWriter) {
	if span == nil {
		return
	}
	status := w.status
	if status == 0 {
		status = statusClientClosed
	}
	span.SetAttributes(attribute.String("modelplane.model_id", l.modelID), attribute.String("modelplane.deployment_id", l.deploymentID),
		attribute.String("modelplane.environment", l.environment))
	telemetry.SetHTTPStatus(span, status)
	span.End()
}
