package telemetry_test

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"

	"github.com/modelplane/modelplane/internal/telemetry"
)

// install puts an in-memory exporter behind the global tracer provider for the test.
func install(t *testing.T) *tracetest.InMemoryExporter {
	t.Helper()
	spans := tracetest.NewInMemoryExporter()
	t.Cleanup(telemetry.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))))
	return spans
}

func TestEnabledFromEnv(t *testing.T) {
	for _, tc := range []struct {
		name                      string
		modelplane, exporter, off string
		want                      bool
	}{
		{"nothing set", "", "", "", false},
		{"MODELPLANE_OTEL", "true", "", "", true},
		{"MODELPLANE_OTEL false", "false", "", "", false},
		{"OTEL_TRACES_EXPORTER=otlp", "", "otlp", "", true},
		{"OTEL_TRACES_EXPORTER=none", "", "none", "", false},
		{"otlp among others", "", "console, otlp", "", true},
		{"OTEL_SDK_DISABLED wins", "true", "otlp", "true", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv(telemetry.EnvEnabled, tc.modelplane)
			t.Setenv(telemetry.EnvTracesExporter, tc.exporter)
			t.Setenv(telemetry.EnvSDKDisabled, tc.off)
			assert.Equal(t, tc.want, telemetry.EnabledFromEnv())
		})
	}
}

func TestSetup_OffInstallsNothing(t *testing.T) {
	before := otel.GetTracerProvider()
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{ServiceName: "modelplane-test"})
	require.NoError(t, err)
	assert.False(t, telemetry.On(), "tracing stays off")
	assert.Same(t, before, otel.GetTracerProvider(), "the no-op provider stays")
	assert.Empty(t, telemetry.TemporalInterceptors(), "no Temporal interceptor when off")
	require.NoError(t, shutdown(context.Background()))
}

func TestSetup_OnExportsOverOTLPAndFlushesOnShutdown(t *testing.T) {
	got := make(chan string, 10)
	collector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.URL.Path
		w.WriteHeader(http.StatusOK)
	}))
	defer collector.Close()
	t.Setenv("OTEL_EXPORTER_OTLP_ENDPOINT", collector.URL)
	t.Setenv(telemetry.EnvProtocol, "http/protobuf")
	shutdown, err := telemetry.Setup(context.Background(), telemetry.Config{Enabled: true, ServiceName: "modelplane-test"})
	require.NoError(t, err)
	assert.True(t, telemetry.On())
	assert.Len(t, telemetry.TemporalInterceptors(), 1, "the Temporal interceptor is added when on")
	_, span := telemetry.Tracer().Start(context.Background(), "work")
	span.End()
	require.NoError(t, shutdown(context.Background()))
	assert.False(t, telemetry.On(), "shutdown turns tracing off again")
	select {
	case p := <-got:
		assert.Equal(t, "/v1/traces", p, "the span is sent to the collector's OTLP traces path")
	default:
		t.Fatal("shutdown did not flush the span to the collector")
	}
}

func TestSetup_RefusesAnUnknownProtocol(t *testing.T) {
	t.Setenv(telemetry.EnvProtocol, "carrier-pigeon")
	_, err := telemetry.Setup(context.Background(), telemetry.Config{Enabled: true})
	require.Error(t, err)
	assert.False(t, telemetry.On())
}

func TestLogHandler_AddsTraceAndSpanIDs(t *testing.T) {
	install(t)
	var buf bytes.Buffer
	log := slog.New(telemetry.NewLogHandler(slog.NewJSONHandler(&buf, nil))).With("component", "test")
	ctx, span := telemetry.Tracer().Start(context.Background(), "work")
	defer span.End()

	log.InfoContext(ctx, "with a span", "k", "v")
	var rec map[string]any
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	assert.Equal(t, span.SpanContext().TraceID().String(), rec["trace_id"])
	assert.Equal(t, span.SpanContext().SpanID().String(), rec["span_id"])
	assert.Equal(t, "test", rec["component"], "the wrapper keeps the attributes given by With")

	buf.Reset()
	log.InfoContext(context.Background(), "without a span")
	rec = nil
	require.NoError(t, json.Unmarshal(buf.Bytes(), &rec), buf.String())
	assert.NotContains(t, rec, "trace_id", "no span, no trace ID")
}

func TestEcho_ContinuesTheCallersTraceWithASpanPerRoute(t *testing.T) {
	spans := install(t)
	e := echo.New()
	e.Use(telemetry.Echo(nil))
	var inHandler trace.SpanContext
	e.GET("/v1/replicas/:id", func(c echo.Context) error {
		inHandler = trace.SpanContextFromContext(c.Request().Context())
		return echo.NewHTTPError(http.StatusServiceUnavailable, "busy")
	})
	srv := httptest.NewServer(e)
	defer srv.Close()

	// The caller's side: a client span, sent as traceparent by the instrumented transport.
	ctx, parent := telemetry.Tracer().Start(context.Background(), "caller")
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/v1/replicas/r1", nil)
	require.NoError(t, err)
	res, err := (&http.Client{Transport: telemetry.Transport(nil)}).Do(req)
	require.NoError(t, err)
	res.Body.Close()
	parent.End()

	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)
	assert.Equal(t, parent.SpanContext().TraceID(), inHandler.TraceID(), "the handler runs in the caller's trace")
	var server tracetest.SpanStub
	for _, s := range spans.GetSpans() {
		if s.SpanKind == trace.SpanKindServer {
			server = s
		}
	}
	require.Equal(t, "GET /v1/replicas/:id", server.Name, "the server span is named by its route; spans: %v", spans.GetSpans())
	assert.Equal(t, parent.SpanContext().TraceID(), server.SpanContext.TraceID())
	assert.True(t, server.Parent.IsRemote(), "the server span's parent came over HTTP")
	assert.Equal(t, "Error", server.Status.Code.String(), "a 5xx marks the span failed")
}
