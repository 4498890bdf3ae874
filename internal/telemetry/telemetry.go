// Package telemetry sets up OpenTelemetry tracing for a modelplane process: an OTLP exporter
// when tracing is on (off by default, and then nothing is recorded or sent), the W3C trace
// context propagator, and the pieces that carry a trace across the process's edges: HTTP
// servers and clients, the Temporal client and worker, and log records.
package telemetry

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync/atomic"

	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracegrpc"
	"go.opentelemetry.io/otel/exporters/otlp/otlptrace/otlptracehttp"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/sdk/resource"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
)

// Environment variables read by Enabled and Setup. The OTEL_ ones are OpenTelemetry's own;
// the exporter reads the rest of them (OTEL_EXPORTER_OTLP_ENDPOINT, _HEADERS, _TIMEOUT, ...)
// itself, and the SDK reads OTEL_TRACES_SAMPLER.
const (
	EnvEnabled        = "MODELPLANE_OTEL"
	EnvTracesExporter = "OTEL_TRACES_EXPORTER"
	EnvSDKDisabled    = "OTEL_SDK_DISABLED"
	EnvProtocol       = "OTEL_EXPORTER_OTLP_PROTOCOL"
	EnvTracesProtocol = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL"
)

// InstrumentationName names the tracer of modelplane's own spans.
const InstrumentationName = "github.com/modelplane/modelplane"

// Config says whether traces are exported, and under which service name when
// OTEL_SERVICE_NAME does not name one.
type Config struct {
	Enabled     bool
	ServiceName string
}

// EnabledFromEnv is the default of the --otel flag: MODELPLANE_OTEL=true, or
// OTEL_TRACES_EXPORTER=otlp; OTEL_SDK_DISABLED=true turns it off whatever else says.
func EnabledFromEnv() bool {
	if v, _ := strconv.ParseBool(strings.TrimSpace(os.Getenv(EnvSDKDisabled))); v {
		return false
	}
	if v, _ := strconv.ParseBool(strings.TrimSpace(os.Getenv(EnvEnabled))); v {
		return true
	}
	for _, e := range strings.Split(os.Getenv(EnvTracesExporter), ",") {
		if strings.TrimSpace(e) == "otlp" {
			return true
		}
	}
	return false
}

// enabled is set by Setup once a tracer provider exports; the Temporal interceptor is added
// only then, so a process with tracing off pays nothing for it.
var enabled atomic.Bool

// On reports whether Setup turned tracing on in this process.
func On() bool { return enabled.Load() }

// Setup installs the process-wide tracer provider and propagator when c.Enabled, and returns
// the function that flushes and stops them (call it on exit, with a bounded context). With
// tracing off it installs nothing: the global provider stays OpenTelemetry's no-op one and the
// propagator injects nothing, so the gateway forwards a client's traceparent untouched and
// invents none.
func Setup(ctx context.Context, c Config) (shutdown func(context.Context) error, err error) {
	if !c.Enabled {
		return func(context.Context) error { return nil }, nil
	}
	exp, err := newExporter(ctx)
	if err != nil {
		return nil, err
	}
	res, err := resource.New(ctx,
		resource.WithAttributes(attribute.String("service.name", c.ServiceName)),
		// OTEL_SERVICE_NAME and OTEL_RESOURCE_ATTRIBUTES override the role's default name.
		resource.WithFromEnv(),
		resource.WithTelemetrySDK(),
		resource.WithHost(),
		resource.WithProcessPID(),
	)
	if err != nil && res == nil {
		return nil, fmt.Errorf("telemetry resource: %w", err)
	}
	tp := sdktrace.NewTracerProvider(sdktrace.WithBatcher(exp), sdktrace.WithResource(res))
	restore := Install(tp)
	return func(ctx context.Context) error {
		restore()
		return tp.Shutdown(ctx)
	}, nil
}

// Install makes tp the process's tracer provider, with the W3C propagator, and turns tracing
// on; restore puts back what was there. Setup uses it, and tests use it with an in-memory
// exporter.
func Install(tp trace.TracerProvider) (restore func()) {
	prevTP, prevProp, prevOn := otel.GetTracerProvider(), otel.GetTextMapPropagator(), enabled.Load()
	otel.SetTracerProvider(tp)
	otel.SetTextMapPropagator(Propagator())
	enabled.Store(true)
	return func() {
		otel.SetTracerProvider(prevTP)
		otel.SetTextMapPropagator(prevProp)
		enabled.Store(prevOn)
	}
}

// Propagator is W3C trace context (traceparent, tracestate) and baggage.
func Propagator() propagation.TextMapPropagator {
	return propagation.NewCompositeTextMapPropagator(propagation.TraceContext{}, propagation.Baggage{})
}

// newExporter is the OTLP exporter of the protocol the environment names: http/protobuf
// (OpenTelemetry's default) or grpc.
func newExporter(ctx context.Context) (sdktrace.SpanExporter, error) {
	protocol := strings.TrimSpace(os.Getenv(EnvTracesProtocol))
	if protocol == "" {
		protocol = strings.TrimSpace(os.Getenv(EnvProtocol))
	}
	switch protocol {
	case "", "http/protobuf":
		return otlptracehttp.New(ctx)
	case "grpc":
		return otlptracegrpc.New(ctx)
	}
	return nil, errors.New("telemetry: " + EnvProtocol + " must be grpc or http/protobuf, not " + strconv.Quote(protocol))
}

// Tracer is modelplane's tracer from the current global provider. It is looked up on each
// use rather than kept: a tracer taken before Setup would stay tied to the first provider.
func Tracer() trace.Tracer { return otel.GetTracerProvider().Tracer(InstrumentationName) }
