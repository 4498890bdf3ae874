package api_test

import (
	"context"
	"encoding/csv"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/store"
)

// usageInterval records a replica's usage of the deployment [from, to) directly.
func (f *createFixture) usageInterval(t *testing.T, d store.Deployment, gpus int, gpuType, profile string, from, to time.Time) {
	t.Helper()
	_, err := f.db.Exec(`
		INSERT INTO usage_intervals (replica_id, workspace_id, model_id, model_name, deployment_id, deployment_name,
		                             gpu_count, gpu_type, mig_profile, started_at, ended_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)`,
		modelplane.NewID(12), d.WorkspaceID, d.ModelID, f.m.Name, d.ID, d.Name, gpus, gpuType, profile, from, to)
	require.NoError(t, err)
}

func (f *createFixture) getRaw(t *testing.T, path, auth string) *httptest.ResponseRecorder {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	req.Header.Set("Authorization", auth)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

var usageBase = time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)

func TestUsage_AnswersHourlyRowsByGroupAsJSONAndCSVToItsWorkspaceOnly(t *testing.T) {
	f := newCreateFixture(t, 0)
	d := f.deployment(t, f.m.ID, f.createDeployment(t, nil))
	f.usageInterval(t, d, 2, "NVIDIA H200", "", usageBase.Add(30*time.Minute), usageBase.Add(2*time.Hour+15*time.Minute))
	f.usageInterval(t, d, 1, "NVIDIA H200", "1g.18gb", usageBase.Add(time.Hour), usageBase.Add(time.Hour+30*time.Minute))
	const query = "/v1/usage?start=2026-03-01T10:00:00Z&end=2026-03-01T13:00:00Z"

	r := f.do(t, http.MethodGet, query, f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	row := func(hour time.Time, replicaSeconds, gpuSeconds float64) map[string]any {
		return map[string]any{"hour": hour.Format(time.RFC3339), "model_id": f.m.ID, "model_name": f.m.Name,
			"deployment_id": d.ID, "deployment_name": d.Name, "gpu_type": "", "mig_profile": "",
			"replica_seconds": replicaSeconds, "gpu_seconds": gpuSeconds}
	}
	require.Equal(t, map[string]any{
		"start": "2026-03-01T10:00:00Z", "end": "2026-03-01T13:00:00Z", "group_by": "deployment",
		"rows": []any{
			row(usageBase, 1800, 3600),
			row(usageBase.Add(time.Hour), 3600+1800, 2*3600+1800),
			row(usageBase.Add(2*time.Hour), 900, 1800),
		},
		"totals": map[string]any{"replica_seconds": float64(1800 + 5400 + 900), "gpu_seconds": float64(3600 + 9000 + 1800)},
	}, r.Body, "grouped by deployment by default, cut at every hour")

	r = f.do(t, http.MethodGet, query+"&group_by=gpu_type", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	var got [][]any
	for _, raw := range r.Body["rows"].([]any) {
		m := raw.(map[string]any)
		require.Empty(t, m["model_id"].(string)+m["deployment_name"].(string), "grouped by GPU type, no model or deployment")
		got = append(got, []any{m["hour"], m["gpu_type"], m["mig_profile"], m["gpu_seconds"]})
	}
	require.Equal(t, [][]any{
		{"2026-03-01T10:00:00Z", "NVIDIA H200", "", float64(3600)},
		{"2026-03-01T11:00:00Z", "NVIDIA H200", "", float64(7200)},
		{"2026-03-01T11:00:00Z", "NVIDIA H200", "1g.18gb", float64(1800)},
		{"2026-03-01T12:00:00Z", "NVIDIA H200", "", float64(1800)},
	}, got, "the MIG instance's usage is under its profile")

	rec := f.getRaw(t, query+"&group_by=model&format=csv", f.auth)
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	require.True(t, strings.HasPrefix(rec.Header().Get("Content-Type"), "text/csv"), rec.Header().Get("Content-Type"))
	lines, err := csv.NewReader(strings.NewReader(rec.Body.String())).ReadAll()
	require.NoError(t, err)
	require.Equal(t, [][]string{
		{"hour", "model_id", "model_name", "deployment_id", "deployment_name", "gpu_type", "mig_profile", "replica_seconds", "gpu_seconds"},
		{"2026-03-01T10:00:00Z", f.m.ID, f.m.Name, "", "", "", "", "1800", "3600"},
		{"2026-03-01T11:00:00Z", f.m.ID, f.m.Name, "", "", "", "", "5400", "9000"},
		{"2026-03-01T12:00:00Z", f.m.ID, f.m.Name, "", "", "", "", "900", "1800"},
	}, lines)

	// Another workspace's key sees none of it.
	_, _, other := apitest.Workspace(t, f.db, "ws")
	r = f.do(t, http.MethodGet, query, "Api-Key "+other)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, []any{}, r.Body["rows"], "another workspace's usage is not answered")
	require.Equal(t, map[string]any{"replica_seconds": float64(0), "gpu_seconds": float64(0)}, r.Body["totals"])
}

func TestUsage_DeletedModelIsStillAnsweredWithItsNames(t *testing.T) {
	f := newCreateFixture(t, 0)
	ctx := context.Background()
	_, admin, err := apikey.Create(ctx, f.db, f.m.WorkspaceID, "admin", true)
	require.NoError(t, err)
	d := f.deployment(t, f.m.ID, f.createDeployment(t, nil))
	replica := modelplane.NewID(12)
	_, _, err = store.CreateReplica(ctx, f.db, store.NewReplica{ID: replica, DeploymentID: d.ID})
	require.NoError(t, err)
	_, err = f.db.Exec(`UPDATE usage_intervals SET started_at = started_at - interval '1 hour' WHERE replica_id = $1`, replica)
	require.NoError(t, err)

	r := f.do(t, http.MethodDelete, "/v1/models/"+f.m.ID, "Api-Key "+admin)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)

	r = f.do(t, http.MethodGet, "/v1/usage", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	rows := r.Body["rows"].([]any)
	require.NotEmpty(t, rows, "the deleted model's last hour is in the last 24 hours")
	var sum float64
	for _, raw := range rows {
		m := raw.(map[string]any)
		require.Equal(t, f.m.ID, m["model_id"])
		require.Equal(t, f.m.Name, m["model_name"])
		require.Equal(t, d.ID, m["deployment_id"])
		require.Equal(t, d.Name, m["deployment_name"])
		sum += m["replica_seconds"].(float64)
	}
	require.InDelta(t, 3600, sum, 5, "the replica ran an hour until its model was deleted")
	totals := r.Body["totals"].(map[string]any)
	require.InDelta(t, sum, totals["replica_seconds"], 1e-6)

	// It has ended: asked again later, it counts no more.
	time.Sleep(20 * time.Millisecond)
	again := f.do(t, http.MethodGet, "/v1/usage", f.auth)
	require.InDelta(t, totals["replica_seconds"], again.Body["totals"].(map[string]any)["replica_seconds"], 1e-9)
}

func TestUsage_BadParametersAre400NamingThem(t *testing.T) {
	f := newCreateFixture(t, 0)
	for query, names := range map[string]string{
		"group_by=replica": "group_by",
		"format=xml":       "format",
		"start=yesterday":  "start",
		"end=2026-13-01":   "end",
		"start=2026-03-02T00:00:00Z&end=2026-03-01T00:00:00Z": "start",
		"start=2026-03-01T00:00:00Z&end=2026-03-01T00:00:00Z": "start",
		"start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:01Z": "31 days",
	} {
		r := f.do(t, http.MethodGet, "/v1/usage?"+query, f.auth)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", query, r.Body)
		require.Contains(t, message(r), names, query)
	}
	r := f.do(t, http.MethodGet, "/v1/usage?start=2026-01-01T00:00:00Z&end=2026-02-01T00:00:00Z", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "31 days exactly is answered: %v", r.Body)
	r = f.do(t, http.MethodGet, "/v1/usage?start=2026-01-01T01:00:00+01:00&end=2026-01-01T02:00:00Z", f.auth)
	require.Equal(t, http.StatusOK, r.Status, "an offset sent unescaped: %v", r.Body)
	require.Equal(t, "2026-01-01T00:00:00Z", r.Body["start"])
	r = f.do(t, http.MethodGet, "/v1/usage", "")
	require.Equal(t, http.StatusUnauthorized, r.Status)
}
