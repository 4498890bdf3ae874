package main

import (
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// usage records that a replica of d ran [from, to) on gpus GPUs of gpuType.
func (f *apiFixture) usage(t *testing.T, d store.Deployment, gpus int, gpuType string, from, to time.Time) {
	t.Helper()
	_, err := f.db.Exec(`
		INSERT INTO usage_intervals (replica_id, workspace_id, model_id, model_name, deployment_id, deployment_name,
		                             gpu_count, gpu_type, started_at, ended_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
		modelplane.NewID(12), d.WorkspaceID, d.ModelID, f.model.Name, d.ID, d.Name, gpus, gpuType, from, to)
	require.NoError(t, err)
}

func TestUsageCmd_PrintsHourlyRowsAndTotalsAsATableOrCSV(t *testing.T) {
	f := newAPIFixture(t)
	hour := time.Now().UTC().Truncate(time.Hour).Add(-3 * time.Hour)
	f.usage(t, f.prod, 2, "H100", hour, hour.Add(time.Hour))
	f.usage(t, f.dev, 0, "", hour.Add(time.Hour), hour.Add(time.Hour+30*time.Minute))
	f.usage(t, f.prod, 1, "H100", hour.Add(-48*time.Hour), hour.Add(-47*time.Hour))
	h := func(d time.Duration) string { return hour.Add(d).Format(time.RFC3339) }

	require.Equal(t, [][]string{
		{"HOUR", "MODEL", "DEPLOYMENT", "NAME", "REPLICA_SECONDS", "GPU_SECONDS"},
		{h(0), "echo", f.prod.ID, f.prod.Name, "3600.0", "7200.0"},
		{h(time.Hour), "echo", f.dev.ID, f.dev.Name, "1800.0", "0.0"},
		{"TOTAL", "5400.0", "7200.0"},
	}, table(f.run(t, "usage")), "the last 24 hours by deployment; the usage two days ago is left out")

	require.Equal(t, [][]string{
		{"HOUR", "GPU_TYPE", "MIG_PROFILE", "REPLICA_SECONDS", "GPU_SECONDS"},
		{h(-48 * time.Hour), "H100", "-", "3600.0", "3600.0"},
		{h(0), "H100", "-", "3600.0", "7200.0"},
		{h(time.Hour), "-", "-", "1800.0", "0.0"},
		{"TOTAL", "9000.0", "10800.0"},
	}, table(f.run(t, "usage", "--since", "72h", "--group-by", "gpu_type")))

	out := f.run(t, "usage", "--group-by", "model", "--csv")
	lines, err := csv.NewReader(strings.NewReader(out)).ReadAll()
	require.NoError(t, err, out)
	require.Equal(t, [][]string{
		{"hour", "model_id", "model_name", "deployment_id", "deployment_name", "gpu_type", "mig_profile", "replica_seconds", "gpu_seconds"},
		{h(0), f.model.ID, "echo", "", "", "", "", "3600", "7200"},
		{h(time.Hour), f.model.ID, "echo", "", "", "", "", "1800", "0"},
	}, lines)

	r := runClient(t, "", nil, "usage", "--group-by", "replica", "--url", f.url, "--api-key", f.key)
	require.NotZero(t, r.exit)
	require.Contains(t, r.stderr, "group_by")
	r = runClient(t, "", nil, "usage", "--since", "800h", "--url", f.url, "--api-key", f.key)
	require.NotZero(t, r.exit)
	require.Contains(t, r.stderr, "31 days")
}
