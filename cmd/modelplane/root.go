package main

import (
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/internal/telemetry"
)

// Defaults shared by several commands. Each can be overridden by a flag or the environment
// variable named beside the flag.
const (
	defaultDataDir       = "./.modelplane"
	defaultDevListen     = "127.0.0.1:8080"
	defaultServerListen  = ":8080"
	defaultTemporal      = "127.0.0.1:7233"
	defaultNamespace     = "default"
	defaultTemporalPort  = 7233
	defaultTemporalUI    = 8233
	defaultLogLevel      = "info"
	databaseURLFile      = "database-url" // in the data dir: where dev's PostgreSQL is
	envDatabaseURL       = "DATABASE_URL"
	envTemporalAddress   = "TEMPORAL_ADDRESS"
	envTemporalNamespace = "TEMPORAL_NAMESPACE"
	envTemporalUIURL     = "MODELPLANE_TEMPORAL_UI_URL"
)

// globalConfig is what every command reads.
type globalConfig struct {
	LogLevel string
}

func newRootCmd() *cobra.Command {
	var g globalConfig
	root := &cobra.Command{
		Use:           "modelplane",
		Short:         "Serve ML models on GPU machines: deployments, environments, promotion, autoscaling",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.LogLevel, "log-level", envString("MODELPLANE_LOG_LEVEL", defaultLogLevel),
		"debug, info, warn or error (MODELPLANE_LOG_LEVEL)")
	logger := func() *slog.Logger { return newLogger(g.LogLevel) }
	root.AddCommand(newDevCmd(logger), newMigrateCmd(logger), newReconcileCmd(logger), newAPICmd(logger), newGatewayCmd(logger), newWorkerCmd(logger), newTemporalCmd(logger), newAgentCmd(logger), newKeysCmd(), newNodesCmd(), newQuotasCmd(), newUsageCmd(), newModelsCmd(), newDeploymentsCmd(), newBuildLogsCmd(), newLogsCmd(), newEnvironmentsCmd(), newPushCmd(), newWatchCmd(), newPromoteCmd(), newPredictCmd(), newAsyncRequestCmd(), newAsyncQueueCmd(), newWebhookSecretCmd(), newSecretsCmd(), newActivateCmd(), newDeactivateCmd(), newDeleteCmd(), newProbeCmd())
	withTelemetry(root)
	return root
}

func newLogger(level string) *slog.Logger {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		l = slog.LevelInfo
	}
	// Lines logged with a traced context name their trace (trace_id, span_id).
	return slog.New(telemetry.NewLogHandler(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: l})))
}

// envString returns the environment variable's value, or def when it is unset or empty.
func envString(name, def string) string {
	if v := strings.TrimSpace(os.Getenv(name)); v != "" {
		return v
	}
	return def
}

// envInt is envString for integers; a value that is not a number is reported when the
// command runs rather than silently ignored.
func envInt(name string, def int) int {
	v := strings.TrimSpace(os.Getenv(name))
	if v == "" {
		return def
	}
	n, err := strconv.Atoi(v)
	if err != nil {
		fmt.Fprintf(os.Stderr, "Error: %s=%q is not a number\n", name, v)
		os.Exit(2)
	}
	return n
}
