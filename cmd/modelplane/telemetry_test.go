package main

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestTelemetry_ProcessCommandsTakeOtelAndClientCommandsDoNot(t *testing.T) {
	root := newRootCmd()
	for _, cmd := range root.Commands() {
		f := cmd.Flags().Lookup("otel")
		if telemetryRoles[cmd.Name()] {
			if assert.NotNil(t, f, "%s runs a process and takes --otel", cmd.Name()) {
				assert.Equal(t, "false", f.DefValue, "%s: tracing is off by default", cmd.Name())
			}
			continue
		}
		assert.Nil(t, f, "%s is not a process and has no --otel", cmd.Name())
	}
}
