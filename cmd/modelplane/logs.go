package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
)

// followInterval is how often `logs -f` asks for new lines.
const followInterval = time.Second

func newLogsCmd() *cobra.Command {
	var cfg clientConfig
	var q client.LogsQuery
	var follow bool
	var since time.Duration
	var level string
	cmd := &cobra.Command{
		Use:   "logs MODEL",
		Short: "Show a model's log lines: its replicas' output and its build's, from the production environment unless told otherwise",
		Long: "Show a model's log lines, oldest first, each as TIME REPLICA LEVEL message (REPLICA is \"build\" for the\n" +
			"output of the deployment's build, LEVEL \"-\" for a line without one). The lines of --deployment,\n" +
			"else of --environment (default production): the last --limit of the last --since; -f then\n" +
			"prints new lines as they come, until Ctrl-C.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if q.Deployment != "" && cmd.Flags().Changed("environment") {
				return fmt.Errorf("--deployment and --environment: give one, not both")
			}
			if since <= 0 || since > 7*24*time.Hour {
				return fmt.Errorf("--since %s: must be more than 0 and at most 7 days (168h)", since)
			}
			if q.Limit < 1 || q.Limit > 1000 {
				return fmt.Errorf("--limit %d: must be 1-1000", q.Limit)
			}
			if level != "" {
				q.MinLevel = apiv1.LogLevelV1(strings.ToUpper(level))
				if !slices.Contains(apiv1.LogLevels(), q.MinLevel) {
					return fmt.Errorf("--level %q: use one of DEBUG, INFO, WARNING, ERROR", level)
				}
			}
			c, err := cfg.client()
			if err != nil {
				return err
			}
			ctx, stop := signalContext(cmd)
			defer stop()
			out, errOut := cmd.OutOrStdout(), cmd.ErrOrStderr()
			q.Start, q.Direction = time.Now().Add(-since), apiv1.SortDesc
			readCtx, cancel := context.WithTimeout(ctx, readTimeout)
			got, err := withModelID(readCtx, c, args[0], func(id string) (apiv1.GetLogsResponseV1, error) {
				args[0] = id
				return c.Logs(readCtx, id, q)
			})
			cancel()
			if err != nil {
				return cfg.explain(err)
			}
			slices.Reverse(got.Logs)
			if cfg.Output == "json" && !follow {
				return printJSON(out, got)
			}
			unavailable := func(u apiv1.UnavailableLogsV1) {
				fmt.Fprintf(errOut, "# the lines of replica %s on node %s cannot be read: %s\n", u.Replica, u.Node, u.Reason)
			}
			for _, u := range got.Unavailable {
				unavailable(u)
			}
			for _, l := range got.Logs {
				printLogLine(out, l)
			}
			if !follow {
				return nil
			}
			q.Limit = 1000
			err = c.FollowLogs(ctx, args[0], q, followInterval, got.Logs, func(l apiv1.LogV1) { printLogLine(out, l) },
				func(u apiv1.UnavailableLogsV1) {
					if !slices.Contains(got.Unavailable, u) {
						unavailable(u)
					}
				})
			return cfg.explain(err)
		},
	}
	addClientFlags(cmd, &cfg)
	f := cmd.Flags()
	f.StringVar(&q.Deployment, "deployment", "", "a deployment's ID (or development, production) instead of an environment")
	f.StringVar(&q.Environment, "environment", modelplane.ProductionEnvironment, "the environment whose deployments' lines to show")
	f.BoolVarP(&follow, "follow", "f", false, "print new lines as they come, until Ctrl-C")
	f.DurationVar(&since, "since", 30*time.Minute, "how far back to look")
	f.IntVar(&q.Limit, "limit", 100, "at most this many lines at first (1-1000)")
	f.StringVar(&q.Replica, "replica", "", "only the lines of the replica with this ID, or a prefix of it")
	f.StringVar(&level, "level", "", "only lines at this level or above (DEBUG, INFO, WARNING, ERROR)")
	return cmd
}

// printLogLine prints TIME REPLICA LEVEL message.
func printLogLine(w io.Writer, l apiv1.LogV1) {
	at := l.Timestamp
	if ns, err := strconv.ParseInt(l.Timestamp, 10, 64); err == nil {
		at = time.Unix(0, ns).UTC().Format("2006-01-02T15:04:05.000000Z")
	}
	replica := "build"
	if l.Replica != nil {
		replica = *l.Replica
	}
	level := "-"
	if l.Level != nil {
		level = string(*l.Level)
	}
	fmt.Fprintf(w, "%s %s %s %s\n", at, replica, level, l.Message)
}
