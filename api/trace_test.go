package api_test

import (
	"net/http"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/modelplane/modelplane/internal/telemetry"
)

func TestTracing_APIRequestIsASpanNamedByRouteWithItsStatus(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	t.Cleanup(telemetry.Install(sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans))))
	f := newFixture(t)

	r := f.do(t, http.MethodGet, "/v1/models/nosuch", "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
	got := spans.GetSpans()
	require.Len(t, got, 1, "one span per request")
	assert.Equal(t, "GET /v1/models/:model_id", got[0].Name)
	var status int64
	for _, a := range got[0].Attributes {
		if a.Key == "http.response.status_code" {
			status = a.Value.AsInt64()
		}
	}
	assert.Equal(t, int64(http.StatusUnauthorized), status, "the span has the status the error handler answered")
	assert.Equal(t, "Unset", got[0].Status.Code.String(), "a 4xx is the client's mistake, not a failed span")
}
