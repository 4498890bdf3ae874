package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/internal/httpserve"
)

// newProbeCmd is the health check of the images, which have no shell or curl to run one.
func newProbeCmd() *cobra.Command {
	var timeout time.Duration
	cmd := &cobra.Command{
		Use:   "probe URL",
		Short: "GET URL and exit 0 on a 2xx answer, 1 otherwise (a container health check)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), timeout)
			defer cancel()
			return httpserve.Probe(ctx, args[0])
		},
	}
	cmd.Flags().DurationVar(&timeout, "timeout", 3*time.Second, "the longest the answer may take")
	return cmd
}
