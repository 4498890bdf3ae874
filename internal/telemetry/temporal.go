package telemetry

import (
	"go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
)

// TemporalInterceptors are the interceptors of a Temporal client (and of the workers made
// from it) that carry a trace from the caller through the workflow to its activities: spans
// for starting workflows, running them, and each activity, with the span context in the
// Temporal headers. None when tracing is off.
func TemporalInterceptors() []interceptor.ClientInterceptor {
	if !On() {
		return nil
	}
	i, err := opentelemetry.NewTracingInterceptor(opentelemetry.TracerOptions{
		Tracer: Tracer(), TextMapPropagator: Propagator(),
	})
	if err != nil {
		// It fails on no options that are set here; without it workflows still run, untraced.
		return nil
	}
	return []interceptor.ClientInterceptor{i}
}
