package workflows_test

import (
	"log/slog"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.temporal.io/sdk/contrib/opentelemetry"
	"go.temporal.io/sdk/interceptor"
	sdklog "go.temporal.io/sdk/log"
	sdkworker "go.temporal.io/sdk/worker"

	"github.com/modelplane/modelplane/workflows"
)

// TestReplay_RecordedHistoriesWithTracing replays every recorded history with the tracing
// interceptor that workers run with when tracing is on: it must not change the commands a
// workflow makes, so histories recorded without it replay with it (and the other way round,
// since it adds no command).
func TestReplay_RecordedHistoriesWithTracing(t *testing.T) {
	spans := tracetest.NewInMemoryExporter()
	tracing, err := opentelemetry.NewTracingInterceptor(opentelemetry.TracerOptions{
		Tracer: sdktrace.NewTracerProvider(sdktrace.WithSyncer(spans)).Tracer("replay"),
	})
	require.NoError(t, err)
	for _, file := range historyFiles(t) {
		t.Run(strings.TrimSuffix(filepath.Base(file), ".json"), func(t *testing.T) {
			r, err := sdkworker.NewWorkflowReplayerWithOptions(sdkworker.WorkflowReplayerOptions{
				Interceptors: []interceptor.WorkerInterceptor{tracing},
			})
			require.NoError(t, err)
			workflows.Register(r)
			quiet := sdklog.NewStructuredLogger(slog.New(slog.DiscardHandler))
			require.NoError(t, r.ReplayWorkflowHistoryFromJSONFile(quiet, file),
				"%s does not replay with the tracing interceptor", file)
		})
	}
}
