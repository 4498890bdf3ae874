package main

import (
	"context"
	"io"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/watch"
)

func newWatchCmd() *cobra.Command {
	var cfg clientConfig
	var wc waitConfig
	var modelName string
	var debounce, keepAwake = watch.DefaultDebounce, watch.DefaultKeepAwake
	cmd := &cobra.Command{
		Use:   "watch DIR",
		Short: "Keep the model's development deployment in step with DIR: every save is patched into the running replica",
		Long: `watch pushes DIR as the model's development deployment when it has none, then watches DIR.
Each burst of saves becomes a patch against the deployment's last point; it is staged and synced
to the running replica: model code by hot reload in the same process when config.yaml says
hot_reload: true (python runtime), by a restart in place otherwise. A change that cannot be
patched (runtime, resources) pushes DIR again. While watch runs the deployment does not scale
to zero.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			c, err := cfg.client()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			pf := pushFlags{Development: true, ModelName: modelName}
			// Ctrl-C ends the watch cleanly; the deployment's lease then runs out by itself.
			ctx, stop := signalContext(cmd)
			defer stop()
			return cfg.explain(watch.Run(ctx, watch.Options{
				Dir: args[0], ModelName: modelName, Client: c, Out: out,
				Debounce: debounce, KeepAwake: keepAwake,
				Push: func(ctx context.Context) error {
					ctx, cancel := context.WithTimeout(ctx, wc.Timeout)
					defer cancel()
					return push(ctx, io.Discard, c, cfg, waitConfig{Wait: true, Timeout: wc.Timeout, Interval: wc.Interval}, pf, "", args[0])
				},
			}))
		},
	}
	f := cmd.Flags()
	f.StringVar(&modelName, "model-name", "", "the model's name (default model_name in DIR/config.yaml)")
	f.DurationVar(&debounce, "debounce", debounce, "how long DIR must be quiet after a save before it is patched")
	f.DurationVar(&keepAwake, "keep-awake", keepAwake, "the lease that keeps the deployment from scaling to zero, renewed while watching (10s-1h)")
	f.DurationVar(&wc.Timeout, "timeout", defaultWaitTimeout, "how long a push may take to become ACTIVE")
	f.DurationVar(&wc.Interval, "poll-interval", defaultPollInterval, "how often to ask for the status while pushing")
	_ = f.MarkHidden("poll-interval")
	addClientFlags(cmd, &cfg)
	return cmd
}
