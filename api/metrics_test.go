package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// latencies returns latency bucket counts, n requests at each given latency.
func latencies(counts map[time.Duration]int64) []int64 {
	b := make([]int64, len(store.LatencyBounds)+1)
	for d, n := range counts {
		b[store.LatencyBucket(d)] += n
	}
	return b
}

func millis(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

// metricsOf reads a metrics answer into the values of each metric per value set:
// out[metric][set] is that metric's values in that set.
func metricsOf(t *testing.T, r response) map[string][][]any {
	t.Helper()
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.ElementsMatch(t, []string{"start_epoch_millis", "end_epoch_millis", "mode", "step_seconds",
		"metric_descriptors", "metric_values"}, sortedKeys(r.Body))
	descs := r.Body["metric_descriptors"].([]any)
	out := map[string][][]any{}
	for _, set := range r.Body["metric_values"].([]any) {
		values := set.(map[string]any)["values"].([]any)
		require.Len(t, values, len(descs))
		for i, d := range descs {
			name := d.(map[string]any)["name"].(string)
			out[name] = append(out[name], values[i].([]any))
		}
	}
	return out
}

func metricsPath(base string, q url.Values) string { return base + "/metrics?" + q.Encode() }

func newMetricsDeployment(t *testing.T, f *fixture, m store.Model) store.Deployment {
	t.Helper()
	d, err := store.CreateDeployment(context.Background(), f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID})
	require.NoError(t, err)
	return d
}

func TestDeploymentMetrics_SummaryAndSeriesComeFromTheLoadSamples(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	ctx := context.Background()
	d, other := newMetricsDeployment(t, f, m), newMetricsDeployment(t, f, m)
	base := time.Now().UTC().Add(-10 * time.Minute).Truncate(10 * time.Second)
	require.NoError(t, store.InsertLoadSamples(ctx, f.db, []store.LoadSample{
		{DeploymentID: d.ID, GatewayID: "g1", At: base.Add(5 * time.Second), Concurrency: 2, Requests: 10,
			Completed: 10, Errors: 1, LatencyBuckets: latencies(map[time.Duration]int64{10 * time.Millisecond: 9, 2 * time.Second: 1})},
		{DeploymentID: d.ID, GatewayID: "g2", At: base.Add(5 * time.Second), Concurrency: 1, Requests: 5,
			Completed: 5, LatencyBuckets: latencies(map[time.Duration]int64{10 * time.Millisecond: 5})},
		{DeploymentID: d.ID, GatewayID: "g1", At: base.Add(25 * time.Second), Concurrency: 4, Requests: 20,
			Completed: 20, Errors: 4, LatencyBuckets: latencies(map[time.Duration]int64{100 * time.Millisecond: 20})},
		{DeploymentID: other.ID, GatewayID: "g1", At: base.Add(5 * time.Second), Concurrency: 50, Requests: 999,
			Completed: 999, Errors: 999, LatencyBuckets: latencies(map[time.Duration]int64{time.Minute: 999})},
	}))
	path := "/v1/models/" + m.ID + "/deployments/" + d.ID
	all := []string{"baseten_inference_requests_total", "baseten_end_to_end_response_time_seconds",
		"baseten_concurrent_requests", "baseten_replicas_active"}

	r := f.do(t, http.MethodGet, metricsPath(path, url.Values{"mode": {"SUMMARY"}, "metrics": all,
		"start_epoch_millis": {millis(base)}, "end_epoch_millis": {millis(base.Add(time.Minute))}}), auth)
	got := metricsOf(t, r)
	require.Equal(t, "SUMMARY", r.Body["mode"])
	require.Nil(t, r.Body["step_seconds"])
	require.EqualValues(t, base.UnixMilli(), r.Body["start_epoch_millis"])
	descs := r.Body["metric_descriptors"].([]any)
	require.Equal(t, map[string]any{"name": "baseten_inference_requests_total", "unit_hint": "COUNT", "kind": "COUNTER",
		"label_sets": []any{map[string]any{"status": "5xx"}, map[string]any{"status": "other"}}}, descs[0])
	require.Equal(t, map[string]any{"name": "baseten_end_to_end_response_time_seconds", "unit_hint": "SECONDS",
		"kind": "HISTOGRAM", "label_sets": []any{map[string]any{"quantile": "0.5"}, map[string]any{"quantile": "0.9"},
			map[string]any{"quantile": "0.95"}, map[string]any{"quantile": "0.99"}}}, descs[1])
	require.Equal(t, [][]any{{5.0, 30.0}}, got["baseten_inference_requests_total"], "5xx and the rest, this deployment's only")
	require.Equal(t, [][]any{{0.1, 0.1, 0.1, 2.0}}, got["baseten_end_to_end_response_time_seconds"])
	require.InDelta(t, 7.0/60, got["baseten_concurrent_requests"][0][0], 1e-9, "average in flight over the minute")
	require.Equal(t, [][]any{{nil}}, got["baseten_replicas_active"], "replica counts are known now only")

	r = f.do(t, http.MethodGet, metricsPath(path, url.Values{"mode": {"SERIES"}, "metrics": all,
		"start_epoch_millis": {millis(base)}, "end_epoch_millis": {millis(base.Add(time.Minute))}}), auth)
	got = metricsOf(t, r)
	require.EqualValues(t, 10, r.Body["step_seconds"])
	sets := r.Body["metric_values"].([]any)
	require.Len(t, sets, 6)
	for i, set := range sets {
		require.EqualValues(t, base.Add(time.Duration(i)*10*time.Second).UnixMilli(), set.(map[string]any)["start_epoch_millis"])
	}
	require.Equal(t, [][]any{{1.0, 14.0}, {0.0, 0.0}, {4.0, 16.0}, {0.0, 0.0}, {0.0, 0.0}, {0.0, 0.0}},
		got["baseten_inference_requests_total"], "a step without samples had no traffic")
	require.Equal(t, []any{0.01, 0.01, 2.0, 2.0}, got["baseten_end_to_end_response_time_seconds"][0])
	require.Equal(t, []any{nil, nil, nil, nil}, got["baseten_end_to_end_response_time_seconds"][1], "no answers, no latency")
	require.InDelta(t, 0.3, got["baseten_concurrent_requests"][0][0], 1e-9)
	require.InDelta(t, 0.4, got["baseten_concurrent_requests"][2][0], 1e-9)

	// Nothing is known of a window before the oldest sample kept.
	old := time.Now().Add(-6 * 24 * time.Hour)
	got = metricsOf(t, f.do(t, http.MethodGet, metricsPath(path, url.Values{"mode": {"SUMMARY"}, "metrics": all,
		"start_epoch_millis": {millis(old)}, "end_epoch_millis": {millis(old.Add(time.Hour))}}), auth))
	require.Equal(t, [][]any{{nil, nil}}, got["baseten_inference_requests_total"])
	require.Equal(t, [][]any{{nil}}, got["baseten_concurrent_requests"])

	// Seven days in SERIES take two-hour steps.
	r = f.do(t, http.MethodGet, metricsPath(path, url.Values{"mode": {"SERIES"},
		"start_epoch_millis": {millis(old.Add(-24 * time.Hour))}, "end_epoch_millis": {millis(old.Add(6 * 24 * time.Hour))}}), auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.EqualValues(t, 7200, r.Body["step_seconds"])
	require.Len(t, r.Body["metric_values"].([]any), 84)
}

func TestDeploymentMetrics_CurrentIsTheLastMinuteWithTheReplicasNow(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	d := newMetricsDeployment(t, f, m)
	_, err := f.db.Exec(`INSERT INTO replicas (id, deployment_id, state) VALUES ($1, $4, 'READY'), ($2, $4, 'READY'),
		($3, $4, 'STARTING')`, modelplane.NewID(12), modelplane.NewID(12), modelplane.NewID(12), d.ID)
	require.NoError(t, err)
	require.NoError(t, store.InsertLoadSamples(context.Background(), f.db, []store.LoadSample{
		{DeploymentID: d.ID, GatewayID: "g1", At: time.Now().UTC().Add(-10 * time.Second).Truncate(time.Second),
			Concurrency: 3, Requests: 2, Completed: 2, LatencyBuckets: latencies(map[time.Duration]int64{time.Second: 2})},
	}))
	path := "/v1/models/" + m.ID + "/deployments/" + d.ID

	r := f.do(t, http.MethodGet, path+"/metrics", auth)
	got := metricsOf(t, r)
	require.Equal(t, "CURRENT", r.Body["mode"], "CURRENT is the default")
	require.EqualValues(t, 60000, r.Body["end_epoch_millis"].(float64)-r.Body["start_epoch_millis"].(float64))
	var names []string
	for _, d := range r.Body["metric_descriptors"].([]any) {
		names = append(names, d.(map[string]any)["name"].(string))
	}
	require.Equal(t, []string{"baseten_replicas_active", "baseten_inference_requests_total",
		"baseten_end_to_end_response_time_seconds"}, names, "the spec's default set")
	require.Equal(t, [][]any{{2.0}}, got["baseten_replicas_active"])
	require.Equal(t, [][]any{{0.0, 2.0}}, got["baseten_inference_requests_total"])

	got = metricsOf(t, f.do(t, http.MethodGet, path+"/metrics?metrics=baseten_replicas_starting&metrics=baseten_replicas_active,baseten_replicas_starting", auth))
	require.Equal(t, [][]any{{1.0}}, got["baseten_replicas_starting"], "a metric asked twice is answered once")
	require.Len(t, got, 2)

	// A window that ends now holds the present, so it has the replica counts too.
	got = metricsOf(t, f.do(t, http.MethodGet, path+"/metrics?mode=SUMMARY", auth))
	require.Equal(t, [][]any{{2.0}}, got["baseten_replicas_active"])
	require.Equal(t, [][]any{{0.0, 2.0}}, got["baseten_inference_requests_total"], "the default window is the last hour")
}

func TestEnvironmentMetrics_CountEachDeploymentWhileItServed(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	ctx := context.Background()
	a, b := newMetricsDeployment(t, f, m), newMetricsDeployment(t, f, m)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, m.ID, modelplane.ProductionEnvironment, b.ID))
	_, err := f.db.Exec(`INSERT INTO replicas (id, deployment_id, state) VALUES ($1, $2, 'READY'), ($3, $4, 'READY')`,
		modelplane.NewID(12), b.ID, modelplane.NewID(12), a.ID)
	require.NoError(t, err)
	base := time.Now().UTC().Add(-10 * time.Minute).Truncate(10 * time.Second)
	// B was promoted over A: the promotion began at +20s (B ramped from then) and switched at +40s.
	p, err := store.CreatePromotion(ctx, f.db, store.NewPromotion{ID: modelplane.NewID(8), ModelID: m.ID,
		Environment: modelplane.ProductionEnvironment, SourceDeploymentID: b.ID, PreviousDeploymentID: &a.ID, WorkflowID: "test"})
	require.NoError(t, err)
	_, err = f.db.Exec(`UPDATE promotions SET status = 'SUCCEEDED', candidate_deployment_id = $2,
		created_at = $3, finished_at = $4 WHERE id = $1`, p.ID, b.ID, base.Add(20*time.Second), base.Add(40*time.Second))
	require.NoError(t, err)
	sample := func(d store.Deployment, at time.Duration, completed int) store.LoadSample {
		return store.LoadSample{DeploymentID: d.ID, GatewayID: "g1", At: base.Add(at), Concurrency: 1,
			Requests: completed, Completed: completed, LatencyBuckets: latencies(map[time.Duration]int64{time.Second: int64(completed)})}
	}
	require.NoError(t, store.InsertLoadSamples(ctx, f.db, []store.LoadSample{
		sample(a, 5*time.Second, 1),     // A serves production
		sample(b, 10*time.Second, 1000), // B, before its promotion: another environment's traffic
		sample(b, 30*time.Second, 10),   // B ramping up
		sample(b, 45*time.Second, 7),    // B serves production
		sample(a, 50*time.Second, 100),  // A after the switch: not production's
	}))
	path := "/v1/models/" + m.ID + "/environments/production"
	window := url.Values{"start_epoch_millis": {millis(base)}, "end_epoch_millis": {millis(base.Add(time.Minute))}}

	q := url.Values{"mode": {"SUMMARY"}}
	for k, v := range window {
		q[k] = v
	}
	got := metricsOf(t, f.do(t, http.MethodGet, metricsPath(path, q), auth))
	require.Equal(t, [][]any{{0.0, 18.0}}, got["baseten_inference_requests_total"])

	q.Set("mode", "SERIES")
	got = metricsOf(t, f.do(t, http.MethodGet, metricsPath(path, q), auth))
	require.Equal(t, [][]any{{0.0, 1.0}, {0.0, 0.0}, {0.0, 0.0}, {0.0, 10.0}, {0.0, 7.0}, {0.0, 0.0}},
		got["baseten_inference_requests_total"])

	got = metricsOf(t, f.do(t, http.MethodGet, path+"/metrics", auth))
	require.Equal(t, [][]any{{1.0}}, got["baseten_replicas_active"], "the deployment production points at now")

	// A custom environment that never had a deployment answers too, with nothing in it.
	r := f.send(t, http.MethodPost, "/v1/models/"+m.ID+"/environments", auth, `{"name": "staging"}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	q.Set("mode", "SUMMARY")
	got = metricsOf(t, f.do(t, http.MethodGet, metricsPath("/v1/models/"+m.ID+"/environments/staging", q), auth))
	require.Equal(t, [][]any{{0.0, 0.0}}, got["baseten_inference_requests_total"])
}

func TestMetrics_BadParametersAre400NamingThem(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	d := newMetricsDeployment(t, f, m)
	now := time.Now()
	for _, base := range []string{"/v1/models/" + m.ID + "/deployments/" + d.ID, "/v1/models/" + m.ID + "/environments/production"} {
		for query, field := range map[string]string{
			"mode=LIVE": "mode",
			"mode=SUMMARY&start_epoch_millis=an-hour":                                             "start_epoch_millis",
			"mode=SERIES&end_epoch_millis=1.5":                                                    "end_epoch_millis",
			"start_epoch_millis=" + millis(now):                                                   "start_epoch_millis",
			"end_epoch_millis=" + millis(now):                                                     "end_epoch_millis",
			"metrics=baseten_gpu_fun":                                                             "metrics",
			"metrics=baseten_replicas_active,nonsense":                                            "metrics",
			"mode=SUMMARY&start_epoch_millis=" + millis(now) + "&end_epoch_millis=" + millis(now): "start_epoch_millis",
			"mode=SERIES&start_epoch_millis=" + millis(now.Add(-8*24*time.Hour)) + "&end_epoch_millis=" + millis(now): "start_epoch_millis",
		} {
			r := f.do(t, http.MethodGet, base+"/metrics?"+query, auth)
			require.Equal(t, http.StatusBadRequest, r.Status, "%s?%s: %v", base, query, r.Body)
			_, msg := errorCode(t, r)
			require.True(t, strings.HasPrefix(msg, field+":"), "%s: %q should name %s", query, msg, field)
		}
	}
}

func TestMetrics_UnknownModelDeploymentOrEnvironmentIs404(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	auth := "Api-Key " + key
	d := newMetricsDeployment(t, f, m)
	other, _, otherKey := f.workspace(t)
	for path, what := range map[string]string{
		"/v1/models/nomodel1/deployments/" + d.ID + "/metrics":         "model",
		"/v1/models/" + m.ID + "/deployments/nodeploy/metrics":         "deployment",
		"/v1/models/" + m.ID + "/environments/nowhere/metrics":         "environment",
		"/v1/models/" + other.ID + "/deployments/" + d.ID + "/metrics": "model",
		"/v1/models/" + other.ID + "/environments/production/metrics":  "model",
	} {
		r := f.do(t, http.MethodGet, path, auth)
		require.Equal(t, http.StatusNotFound, r.Status, "%s: %v", path, r.Body)
		_, msg := errorCode(t, r)
		require.Contains(t, msg, what, path)
	}
	require.Equal(t, http.StatusOK, f.do(t, http.MethodGet, "/v1/models/"+other.ID+"/environments/production/metrics", "Api-Key "+otherKey).Status)
	require.Equal(t, http.StatusUnauthorized, f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/deployments/"+d.ID+"/metrics", "").Status)
	require.Equal(t, http.StatusUnauthorized, f.do(t, http.MethodGet, "/v1/models/"+m.ID+"/environments/production/metrics", "").Status)
}

// TestDeploymentMetrics_ReplicasOfEveryPastStepComeFromTheUsageRecord: modelplane_replicas
// and modelplane_replica_starts are known in every step up to now, not only the present.
func TestDeploymentMetrics_ReplicasOfEveryPastStepComeFromTheUsageRecord(t *testing.T) {
	f := newFixture(t)
	m, _, key := f.workspace(t)
	d := newMetricsDeployment(t, f, m)
	base := time.Now().UTC().Add(-30 * time.Minute).Truncate(time.Minute)
	at := func(min int) time.Time { return base.Add(time.Duration(min) * time.Minute) }
	for _, iv := range []struct {
		from time.Time
		to   *time.Time
	}{{at(-10), ptrTime(at(7))}, {at(3), nil}, {at(4), nil}} {
		_, err := f.db.Exec(`INSERT INTO usage_intervals (replica_id, workspace_id, model_id, model_name, deployment_id,
			deployment_name, started_at, ended_at) VALUES ($1, $2, $3, 'm', $4, 'd', $5, $6)`,
			modelplane.NewID(12), m.WorkspaceID, m.ID, d.ID, iv.from, iv.to)
		require.NoError(t, err)
	}
	r := f.do(t, http.MethodGet, metricsPath("/v1/models/"+m.ID+"/deployments/"+d.ID, url.Values{"mode": {"SERIES"},
		"metrics":            {"modelplane_replicas,modelplane_replica_starts"},
		"start_epoch_millis": {millis(at(0))}, "end_epoch_millis": {millis(at(10))}}), "Api-Key "+key)
	got := metricsOf(t, r)
	require.EqualValues(t, 10, r.Body["step_seconds"])
	replicas, starts := got["modelplane_replicas"], got["modelplane_replica_starts"]
	require.Len(t, replicas, 60)
	require.Equal(t, []any{1.0}, replicas[0], "at 0:10 the first runs")
	require.Equal(t, []any{3.0}, replicas[30], "at 5:10 three run")
	require.Equal(t, []any{2.0}, replicas[59], "at 10:00 the first has gone")
	placed := 0.0
	for _, s := range starts {
		placed += s[0].(float64)
	}
	require.Equal(t, 2.0, placed, "two replicas were placed within the window")
	require.Equal(t, []any{1.0}, starts[17], "one placed at 3:00, in the step that ends then")
}

func ptrTime(t time.Time) *time.Time { return &t }
