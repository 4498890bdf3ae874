package main

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/modelplane/modelplane/apiv1"
)

func newUsageCmd() *cobra.Command {
	var (
		cfg     clientConfig
		since   time.Duration
		groupBy string
		asCSV   bool
	)
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show your workspace's replica-seconds and GPU-seconds by hour, deleted deployments included",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := cfg.client()
			if err != nil {
				return err
			}
			if since <= 0 {
				return fmt.Errorf("--since %s: must be more than 0", since)
			}
			end := time.Now().UTC()
			query := url.Values{
				"start":    {end.Add(-since).Format(time.RFC3339Nano)},
				"end":      {end.Format(time.RFC3339Nano)},
				"group_by": {groupBy},
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), readTimeout)
			defer cancel()
			u, err := c.Usage(ctx, query)
			if err != nil {
				return cfg.explain(err)
			}
			out := cmd.OutOrStdout()
			switch {
			case asCSV:
				return usageCSV(out, u.Rows)
			case cfg.Output == "json":
				return printJSON(out, u)
			}
			tw := tabwriter.NewWriter(out, 0, 0, 3, ' ', 0)
			usageTable(tw, u)
			return tw.Flush()
		},
	}
	addClientFlags(cmd, &cfg)
	f := cmd.Flags()
	f.DurationVar(&since, "since", 24*time.Hour, "how far back to look, up to 744h (31 days)")
	f.StringVar(&groupBy, "group-by", string(apiv1.UsageByDeployment), "model, deployment or gpu_type")
	f.BoolVar(&asCSV, "csv", false, "print CSV (a header row, then one row per hour and group) instead of a table")
	return cmd
}

// usageTable prints one line per hour and group, with the columns of the grouping, then the
// totals.
func usageTable(w io.Writer, u apiv1.UsageV1) {
	header, group := []string{"MODEL", "DEPLOYMENT", "NAME"}, func(r apiv1.UsageRowV1) []string {
		return []string{r.ModelName, r.DeploymentID, r.DeploymentName}
	}
	switch u.GroupBy {
	case apiv1.UsageByModel:
		header, group = []string{"MODEL", "NAME"}, func(r apiv1.UsageRowV1) []string { return []string{r.ModelID, r.ModelName} }
	case apiv1.UsageByGPUType:
		header, group = []string{"GPU_TYPE", "MIG_PROFILE"}, func(r apiv1.UsageRowV1) []string {
			return []string{dash(r.GPUType), dash(r.MIGProfile)}
		}
	}
	fmt.Fprintf(w, "HOUR\t%s\tREPLICA_SECONDS\tGPU_SECONDS\n", strings.Join(header, "\t"))
	for _, r := range u.Rows {
		fmt.Fprintf(w, "%s\t%s\t%.1f\t%.1f\n", r.Hour.UTC().Format(time.RFC3339), strings.Join(group(r), "\t"),
			r.ReplicaSeconds, r.GPUSeconds)
	}
	fmt.Fprintf(w, "TOTAL%s\t%.1f\t%.1f\n", strings.Repeat("\t", len(header)), u.Totals.ReplicaSeconds, u.Totals.GPUSeconds)
}

// dash is s, or "-" when it is empty (a whole GPU's MIG profile, a CPU replica's GPU type).
func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// usageCSV prints rows as GET /v1/usage?format=csv answers them.
func usageCSV(w io.Writer, rows []apiv1.UsageRowV1) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(apiv1.UsageCSVHeader()); err != nil {
		return err
	}
	for _, r := range rows {
		if err := cw.Write(r.CSV()); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}
