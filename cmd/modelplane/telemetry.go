package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/internal/telemetry"
)

// telemetryRoles are the commands that run a process of modelplane and trace it; the service
// name of each is modelplane-<command> unless OTEL_SERVICE_NAME names one.
var telemetryRoles = map[string]bool{"dev": true, "api": true, "gateway": true, "worker": true, "agent": true}

// telemetryShutdownTimeout bounds flushing the last spans on exit, so an unreachable
// collector does not hold the process.
const telemetryShutdownTimeout = 5 * time.Second

// withTelemetry gives each process command the --otel flag and sets tracing up around its
// run: on, spans go to the OTLP endpoint of the OTEL_EXPORTER_OTLP_* variables and are
// flushed on exit; off (the default), nothing is recorded.
func withTelemetry(root *cobra.Command) {
	for _, cmd := range root.Commands() {
		if !telemetryRoles[cmd.Name()] || cmd.RunE == nil {
			continue
		}
		var on bool
		cmd.Flags().BoolVar(&on, "otel", telemetry.EnabledFromEnv(), "export OpenTelemetry traces over OTLP to OTEL_EXPORTER_OTLP_ENDPOINT (MODELPLANE_OTEL=true or OTEL_TRACES_EXPORTER=otlp)")
		run, service := cmd.RunE, "modelplane-"+cmd.Name()
		cmd.RunE = func(cmd *cobra.Command, args []string) error {
			shutdown, err := telemetry.Setup(cmd.Context(), telemetry.Config{Enabled: on, ServiceName: service})
			if err != nil {
				return err
			}
			defer func() {
				ctx, cancel := context.WithTimeout(context.Background(), telemetryShutdownTimeout)
				defer cancel()
				if err := shutdown(ctx); err != nil {
					fmt.Fprintln(os.Stderr, "telemetry: flushing traces:", err)
				}
			}()
			return run(cmd, args)
		}
	}
}
