package telemetry

import (
	"errors"
	"net/http"

	"github.com/labstack/echo/v4"
	"go.opentelemetry.io/contrib/instrumentation/net/http/otelhttp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/propagation"
	"go.opentelemetry.io/otel/trace"
)

// Transport wraps rt (nil: http.DefaultTransport) so that every request is a client span and
// carries traceparent to the server.
func Transport(rt http.RoundTripper) http.RoundTripper {
	if rt == nil {
		rt = http.DefaultTransport
	}
	return otelhttp.NewTransport(rt)
}

// Echo is middleware that continues the trace a request's traceparent names (or starts one)
// with a server span named by method and route. statusOf maps a handler's error to the status
// the error handler will answer; nil reads echo.HTTPError's code and takes 500 for the rest.
// Add it with Use, so the route is known.
func Echo(statusOf func(error) int) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			r := c.Request()
			ctx := otel.GetTextMapPropagator().Extract(r.Context(), propagation.HeaderCarrier(r.Header))
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			ctx, span := Tracer().Start(ctx, r.Method+" "+route, trace.WithSpanKind(trace.SpanKindServer),
				trace.WithAttributes(attribute.String("http.request.method", r.Method), attribute.String("http.route", route),
					attribute.String("url.path", r.URL.Path)))
			defer span.End()
			c.SetRequest(r.WithContext(ctx))
			err := next(c)
			status := c.Response().Status
			if err != nil {
				status = errorStatus(err, statusOf)
			}
			SetHTTPStatus(span, status)
			if err != nil && status >= 500 {
				span.RecordError(err)
			}
			return err
		}
	}
}

func errorStatus(err error, statusOf func(error) int) int {
	if statusOf != nil {
		return statusOf(err)
	}
	var he *echo.HTTPError
	if errors.As(err, &he) {
		return he.Code
	}
	return http.StatusInternalServerError
}

// SetHTTPStatus records a server span's answer; a 5xx marks the span failed.
func SetHTTPStatus(span trace.Span, status int) {
	span.SetAttributes(attribute.Int("http.response.status_code", status))
	if status >= 500 {
		span.SetStatus(codes.Error, http.StatusText(status))
	}
}
