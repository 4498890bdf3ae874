package grafana_test

import (
	"encoding/json"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	_ "github.com/lib/pq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/autoscaler"
	"github.com/modelplane/modelplane/deploy/grafana"
	"github.com/modelplane/modelplane/gateway"
)

// registered is every metric name the API, a gateway and the autoscaler register: their
// collectors are built on a registry of their own and asked to describe themselves. Nothing
// connects to the database.
func registered(t *testing.T) map[string]bool {
	t.Helper()
	db, err := sqlx.Open("postgres", "postgres://127.0.0.1:1/unused?sslmode=disable")
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })

	reg := prometheus.NewRegistry()
	api.New(api.Deps{DB: db, Registry: reg})
	_, err = gateway.New(gateway.Options{DB: db, DatabaseURL: "postgres://unused", Registerer: reg})
	require.NoError(t, err)
	autoscaler.New(autoscaler.Options{DB: db, Registerer: reg})

	names := map[string]bool{}
	descs := make(chan *prometheus.Desc)
	go func() { reg.Describe(descs); close(descs) }()
	fqName := regexp.MustCompile(`fqName: "([^"]+)"`)
	for d := range descs {
		m := fqName.FindStringSubmatch(d.String())
		require.NotNil(t, m, "a descriptor without a name: %s", d)
		names[m[1]] = true
	}
	require.NotEmpty(t, names)
	return names
}

// panel is what the test reads of a dashboard panel.
type panel struct {
	Title   string `json:"title"`
	Type    string `json:"type"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
	Panels []panel `json:"panels"`
}

var (
	// Parts of an expression that name no metric: strings, label matchers, ranges, grouping
	// label lists and Grafana's variables.
	quoted   = regexp.MustCompile(`"(?:[^"\\]|\\.)*"`)
	matchers = regexp.MustCompile(`\{[^}]*\}`)
	ranges   = regexp.MustCompile(`\[[^\]]*\]`)
	grouping = regexp.MustCompile(`\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)`)
	variable = regexp.MustCompile(`\$\{?\w+\}?`)
	ident    = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	// PromQL's functions, aggregations and keywords that the dashboard uses.
	promql = []string{"sum", "max", "min", "avg", "count", "rate", "irate", "increase", "histogram_quantile",
		"clamp_max", "clamp_min", "vector", "bool", "and", "or", "unless", "by", "on", "without", "ignoring",
		"group_left", "group_right", "topk", "bottomk", "abs", "time"}
)

// metricsOf returns the metric names an expression queries.
func metricsOf(expr string) []string {
	for _, re := range []*regexp.Regexp{quoted, matchers, ranges, grouping, variable} {
		expr = re.ReplaceAllString(expr, " ")
	}
	var out []string
	for _, id := range ident.FindAllString(expr, -1) {
		if !slices.Contains(promql, id) {
			out = append(out, id)
		}
	}
	return out
}

// known says whether name is a registered metric, or a histogram's series of one.
func known(names map[string]bool, name string) bool {
	if names[name] {
		return true
	}
	for _, suffix := range []string{"_bucket", "_sum", "_count"} {
		if base, ok := strings.CutSuffix(name, suffix); ok && names[base] {
			return true
		}
	}
	return false
}

func TestDashboard_QueriesOnlyMetricsTheCodeRegisters(t *testing.T) {
	names := registered(t)
	var d struct {
		Title  string  `json:"title"`
		Panels []panel `json:"panels"`
	}
	require.NoError(t, json.Unmarshal(grafana.Dashboard, &d), "modelplane.json is not JSON")
	used := map[string]bool{}
	var check func(ps []panel)
	check = func(ps []panel) {
		for _, p := range ps {
			check(p.Panels)
			if p.Type == "row" {
				continue
			}
			require.NotEmpty(t, p.Targets, "panel %q queries nothing", p.Title)
			for _, tg := range p.Targets {
				ms := metricsOf(tg.Expr)
				assert.NotEmpty(t, ms, "panel %q: %q names no metric", p.Title, tg.Expr)
				for _, m := range ms {
					used[m] = true
					assert.True(t, known(names, m), "panel %q queries %s, which no collector registers (expr %q)", p.Title, m, tg.Expr)
				}
			}
		}
	}
	check(d.Panels)

	// The list: each of these has a panel.
	for _, m := range []string{"modelplane_inference_requests_total", "modelplane_end_to_end_response_time_seconds_bucket",
		"modelplane_replicas_active", "modelplane_environment_traffic_weight", "modelplane_cold_start_seconds_count",
		"modelplane_async_queue_size", "modelplane_gpu_healthy"} {
		assert.True(t, used[m], "no panel shows %s", m)
	}
}

func TestMetricsOf_FindsMetricsNotLabelsOrFunctions(t *testing.T) {
	got := metricsOf(`histogram_quantile(0.95, sum by (le, model_id) (rate(a_seconds_bucket{model_id=~"$model_id", x="by"}[$__rate_interval]))) / on (model_id) group_left () max(b_total) or vector(0)`)
	assert.Equal(t, []string{"a_seconds_bucket", "b_total"}, got)
}
