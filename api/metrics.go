package api

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/store"
)

// The metrics routes answer from the gateways' load samples (per deployment, gateway and
// second: concurrency, requests, answers, 5xx, latency buckets) and the replicas table.

// metricDef is a metric the routes serve: Baseten's name, and how its values are made.
type metricDef struct {
	apiv1.MetricDescriptorV1
	// values are the metric's values for one step, one per label set.
	values func(v stepValues) []*float64
}

// stepValues is what is known of one step.
type stepValues struct {
	// load is the step's summed samples; nil when nothing is known of the step (before the
	// oldest sample kept, or in the future).
	load *store.LoadStep
	// seconds is how much of the step has passed (the concurrency's divisor).
	seconds float64
	// ready and starting are the replica counts now; nil for a step that does not hold the
	// present.
	ready, starting *int
	// replicas is the step's count from the usage record: live at its end, placed within it.
	replicas *store.ReplicaStep
}

// latencyQuantiles are the histogram's series, in basis points.
var latencyQuantiles = []struct {
	label string
	bp    int64
}{{"0.5", 5000}, {"0.9", 9000}, {"0.95", 9500}, {"0.99", 9900}}

var servedMetrics = []metricDef{
	{apiv1.MetricDescriptorV1{Name: "baseten_replicas_active", UnitHint: apiv1.MetricUnitCount,
		Kind: apiv1.MetricKindGauge, LabelSets: []map[string]string{{}}},
		func(v stepValues) []*float64 { return []*float64{intValue(v.ready)} }},
	{apiv1.MetricDescriptorV1{Name: "baseten_inference_requests_total", UnitHint: apiv1.MetricUnitCount,
		Kind: apiv1.MetricKindCounter, LabelSets: []map[string]string{{"status": "5xx"}, {"status": "other"}}},
		func(v stepValues) []*float64 {
			if v.load == nil {
				return []*float64{nil, nil}
			}
			return []*float64{ptr(float64(v.load.Errors)), ptr(float64(v.load.Completed - v.load.Errors))}
		}},
	{apiv1.MetricDescriptorV1{Name: "baseten_end_to_end_response_time_seconds", UnitHint: apiv1.MetricUnitSeconds,
		Kind: apiv1.MetricKindHistogram, LabelSets: quantileLabels()},
		func(v stepValues) []*float64 {
			out := make([]*float64, len(latencyQuantiles))
			if v.load == nil {
				return out
			}
			for i, q := range latencyQuantiles {
				if d, ok := store.LatencyQuantile(v.load.Buckets, q.bp); ok {
					out[i] = ptr(d.Seconds())
				}
			}
			return out
		}},
	{apiv1.MetricDescriptorV1{Name: "baseten_replicas_starting", UnitHint: apiv1.MetricUnitCount,
		Kind: apiv1.MetricKindGauge, LabelSets: []map[string]string{{}}},
		func(v stepValues) []*float64 { return []*float64{intValue(v.starting)} }},
	usageMetric(metricReplicas, apiv1.MetricKindGauge, func(st store.ReplicaStep) int { return st.Live }),
	usageMetric(metricReplicaStarts, apiv1.MetricKindCounter, func(st store.ReplicaStep) int { return st.Placed }),
	{apiv1.MetricDescriptorV1{Name: "baseten_concurrent_requests", UnitHint: apiv1.MetricUnitCount,
		Kind: apiv1.MetricKindGauge, LabelSets: []map[string]string{{}}},
		func(v stepValues) []*float64 {
			if v.load == nil || v.seconds <= 0 {
				return []*float64{nil}
			}
			return []*float64{ptr(v.load.Concurrency / v.seconds)}
		}},
}

// The metrics answered from the usage record (store.ReplicaSteps), which is read only when
// one of them is asked for.
const (
	metricReplicas      = "modelplane_replicas"
	metricReplicaStarts = "modelplane_replica_starts"
)

// usageMetric is a count of the usage record's steps, known in every step up to now.
func usageMetric(name string, kind apiv1.MetricKind, count func(store.ReplicaStep) int) metricDef {
	return metricDef{apiv1.MetricDescriptorV1{Name: name, UnitHint: apiv1.MetricUnitCount, Kind: kind,
		LabelSets: []map[string]string{{}}},
		func(v stepValues) []*float64 {
			if v.replicas == nil {
				return []*float64{nil}
			}
			return []*float64{ptr(float64(count(*v.replicas)))}
		}}
}

// defaultMetrics are those answered when ?metrics= is not sent, as in Baseten's API.
var defaultMetrics = []string{"baseten_replicas_active", "baseten_inference_requests_total",
	"baseten_end_to_end_response_time_seconds"}

func quantileLabels() []map[string]string {
	out := make([]map[string]string, len(latencyQuantiles))
	for i, q := range latencyQuantiles {
		out[i] = map[string]string{"quantile": q.label}
	}
	return out
}

func ptr(f float64) *float64 { return &f }

func intValue(n *int) *float64 {
	if n == nil {
		return nil
	}
	return ptr(float64(*n))
}

const (
	// currentWindow is what CURRENT reports the load over: the last minute.
	currentWindow = time.Minute
	// defaultWindow is the window when start_epoch_millis is not sent.
	defaultWindow = time.Hour
	// maxWindow is the longest window the spec allows.
	maxWindow = 7 * 24 * time.Hour
	// maxSeriesPoints bounds the value sets of a SERIES answer.
	maxSeriesPoints = 120
)

// seriesSteps are the step lengths SERIES picks from: the shortest that keeps the window
// within maxSeriesPoints.
var seriesSteps = []time.Duration{10 * time.Second, 15 * time.Second, 30 * time.Second, time.Minute,
	2 * time.Minute, 5 * time.Minute, 10 * time.Minute, 15 * time.Minute, 30 * time.Minute, time.Hour,
	2 * time.Hour, 3 * time.Hour, 6 * time.Hour, 12 * time.Hour, 24 * time.Hour}

// seriesStep is the step for a SERIES window.
func seriesStep(window time.Duration) time.Duration {
	for _, s := range seriesSteps {
		if window <= s*maxSeriesPoints {
			return s
		}
	}
	return seriesSteps[len(seriesSteps)-1]
}

// metricsRequest is a metrics route's parameters, read and checked.
type metricsRequest struct {
	mode       apiv1.MetricMode
	start, end time.Time
	step       time.Duration // the whole window unless SERIES
	metrics    []metricDef
}

// readMetricsRequest reads mode, start_epoch_millis, end_epoch_millis and metrics.
func readMetricsRequest(c echo.Context, now time.Time) (metricsRequest, error) {
	var r metricsRequest
	var err error
	if r.mode, err = queryEnum(c, "mode", apiv1.MetricModeCurrent, apiv1.MetricModes()); err != nil {
		return r, err
	}
	start, err := queryEpochMillis(c, "start_epoch_millis")
	if err != nil {
		return r, err
	}
	end, err := queryEpochMillis(c, "end_epoch_millis")
	if err != nil {
		return r, err
	}
	if r.mode == apiv1.MetricModeCurrent {
		if start != nil || end != nil {
			name := "start_epoch_millis"
			if start == nil {
				name = "end_epoch_millis"
			}
			return r, Errorf(http.StatusBadRequest, "%s: must be omitted in CURRENT mode (use SUMMARY or SERIES for a window)", name)
		}
		r.start, r.end = now.Add(-currentWindow), now
	} else {
		r.end = now
		if end != nil {
			r.end = *end
		}
		r.start = r.end.Add(-defaultWindow)
		if start != nil {
			r.start = *start
		}
		switch {
		case !r.start.Before(r.end):
			return r, Errorf(http.StatusBadRequest, "start_epoch_millis: must be before end_epoch_millis")
		case r.end.Sub(r.start) > maxWindow:
			return r, Errorf(http.StatusBadRequest, "start_epoch_millis: the window may be at most 7 days, not %s",
				r.end.Sub(r.start).Round(time.Second))
		}
	}
	r.step = r.end.Sub(r.start)
	if r.mode == apiv1.MetricModeSeries {
		r.step = seriesStep(r.step)
	}
	names := queryList(c, "metrics")
	if len(names) == 0 {
		names = defaultMetrics
	}
	for _, name := range names {
		i := slices.IndexFunc(servedMetrics, func(m metricDef) bool { return m.Name == name })
		if i < 0 {
			served := make([]string, len(servedMetrics))
			for j, m := range servedMetrics {
				served[j] = m.Name
			}
			return r, Errorf(http.StatusBadRequest, "metrics: unknown metric %q; modelplane serves %s", name,
				strings.Join(served, ", "))
		}
		if !slices.ContainsFunc(r.metrics, func(m metricDef) bool { return m.Name == name }) {
			r.metrics = append(r.metrics, servedMetrics[i])
		}
	}
	return r, nil
}

// metricsAnswer computes the answer for the samples within spans and the replica counts
// of the deployments live names.
func (s *Server) metricsAnswer(c echo.Context, r metricsRequest, now time.Time, spans []store.SampleSpan, live []string) (apiv1.ModelMetricsV1, error) {
	ctx := c.Request().Context()
	steps, err := store.LoadSteps(ctx, s.deps.DB, spans, r.start, r.end, r.step)
	if err != nil {
		return apiv1.ModelMetricsV1{}, err
	}
	earliest, err := store.EarliestLoadSample(ctx, s.deps.DB)
	if err != nil {
		return apiv1.ModelMetricsV1{}, err
	}
	ready, starting := 0, 0
	if len(live) > 0 {
		if ready, starting, err = store.ReplicaStateCounts(ctx, s.deps.DB, live); err != nil {
			return apiv1.ModelMetricsV1{}, err
		}
	}
	var placed []store.ReplicaStep
	if slices.ContainsFunc(r.metrics, func(m metricDef) bool { return m.Name == metricReplicas || m.Name == metricReplicaStarts }) {
		if placed, err = store.ReplicaSteps(ctx, s.deps.DB, spans, r.start, r.end, r.step, now); err != nil {
			return apiv1.ModelMetricsV1{}, err
		}
	}
	return metricsV1(r, now, steps, earliest, ready, starting, placed), nil
}

// metricsV1 lays the steps out in Baseten's shape. A step is known from the oldest sample
// kept to now; a known step without samples had no traffic. Replica counts are only known
// now, so they fill the step that holds the present and are null in the others; the usage
// record's counts (replicas) fill every step up to now.
func metricsV1(r metricsRequest, now time.Time, steps []store.LoadStep, earliest *time.Time, ready, starting int, replicas []store.ReplicaStep) apiv1.ModelMetricsV1 {
	out := apiv1.ModelMetricsV1{StartEpochMillis: r.start.UnixMilli(), EndEpochMillis: r.end.UnixMilli(), Mode: r.mode,
		MetricDescriptors: make([]apiv1.MetricDescriptorV1, len(r.metrics)), MetricValues: []apiv1.MetricValueSetV1{}}
	if r.mode == apiv1.MetricModeSeries {
		secs := int64(r.step / time.Second)
		out.StepSeconds = &secs
	}
	for i, m := range r.metrics {
		out.MetricDescriptors[i] = m.MetricDescriptorV1
	}
	byIndex := map[int]store.LoadStep{}
	for _, st := range steps {
		byIndex[st.Index] = st
	}
	for k, from := 0, r.start; from.Before(r.end); k, from = k+1, from.Add(r.step) {
		to := earlier(from.Add(r.step), r.end)
		var v stepValues
		if passed := earlier(to, now).Sub(from); passed > 0 && earliest != nil && to.After(*earliest) {
			load := byIndex[k]
			v.load, v.seconds = &load, passed.Seconds()
		}
		if !now.Before(from) && (now.Before(to) || (to.Equal(r.end) && !now.After(to))) {
			v.ready, v.starting = &ready, &starting
		}
		if k < len(replicas) && !from.After(now) {
			v.replicas = &replicas[k]
		}
		set := apiv1.MetricValueSetV1{StartEpochMillis: from.UnixMilli(), Values: make([][]*float64, len(r.metrics))}
		for i, m := range r.metrics {
			set.Values[i] = m.values(v)
		}
		out.MetricValues = append(out.MetricValues, set)
	}
	return out
}

// deploymentMetrics answers GET .../deployments/{deployment_id}/metrics.
func (s *Server) deploymentMetrics(c echo.Context) error {
	_, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	r, err := readMetricsRequest(c, now)
	if err != nil {
		return err
	}
	spans := []store.SampleSpan{{DeploymentID: d.ID, From: r.start, To: r.end}}
	out, err := s.metricsAnswer(c, r, now, spans, []string{d.ID})
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// environmentMetrics answers GET .../environments/{env_name}/metrics: the load of every
// deployment while it served the environment, as its promotions tell.
func (s *Server) environmentMetrics(c echo.Context) error {
	m, e, err := s.pathEnvironment(c)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	r, err := readMetricsRequest(c, now)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	spans, err := s.environmentSpans(ctx, m, e, r.start, r.end)
	if err != nil {
		return err
	}
	var live []string
	if e.CurrentDeploymentID != nil {
		live = append(live, *e.CurrentDeploymentID)
	}
	if p, err := store.RunningPromotion(ctx, s.deps.DB, m.ID, e.Name); err == nil {
		if p.CandidateDeploymentID != nil && !slices.Contains(live, *p.CandidateDeploymentID) {
			live = append(live, *p.CandidateDeploymentID)
		}
	} else if !errors.Is(err, store.ErrNotFound) {
		return err
	}
	out, err := s.metricsAnswer(c, r, now, spans, live)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, out)
}

// pathEnvironment is the key's model and its environment that the path names.
func (s *Server) pathEnvironment(c echo.Context) (store.Model, store.Environment, error) {
	m, err := s.ownModel(c)
	if err != nil {
		return m, store.Environment{}, err
	}
	e, err := s.environment(c, m.ID, c.Param("env"))
	return m, e, err
}

// environmentSpans are the spans of the deployments that served e within [from, to), as its
// promotions tell (servingSpans).
func (s *Server) environmentSpans(ctx context.Context, m store.Model, e store.Environment, from, to time.Time) ([]store.SampleSpan, error) {
	promotions, err := store.EnvironmentPromotions(ctx, s.deps.DB, m.ID, e.Name)
	if err != nil {
		return nil, err
	}
	return servingSpans(e.CurrentDeploymentID, promotions, from, to), nil
}

// servingSpans says which deployments served an environment when, within [from, to), from
// its promotions (oldest first) and the deployment it points at now. A promotion's candidate
// serves from the promotion's start (a ramp gives it traffic before the switch) until the
// next promotion switches away from it, or until its own promotion ended when that failed
// or was cancelled; the deployment a promotion replaced serves until the promotion ended.
func servingSpans(current *string, promotions []store.Promotion, from, to time.Time) []store.SampleSpan {
	var spans []store.SampleSpan
	add := func(id *string, a, b time.Time) {
		if id == nil || *id == "" {
			return
		}
		a, b = later(a, from), earlier(b, to)
		if a.Before(b) {
			spans = append(spans, store.SampleSpan{DeploymentID: *id, From: a, To: b})
		}
	}
	var switches []store.Promotion
	for _, p := range promotions {
		cand := cmp.Or(p.CandidateDeploymentID, &p.SourceDeploymentID)
		switch {
		case p.Status == modelplane.PromotionSucceeded && p.FinishedAt != nil:
			switches = append(switches, p)
		case p.Status.InProgress() || p.FinishedAt == nil:
			add(cand, p.CreatedAt, to)
		default:
			add(cand, p.CreatedAt, *p.FinishedAt)
		}
	}
	slices.SortStableFunc(switches, func(a, b store.Promotion) int { return a.FinishedAt.Compare(*b.FinishedAt) })
	since := from
	if len(switches) > 0 {
		add(switches[0].PreviousDeploymentID, from, *switches[0].FinishedAt)
	}
	for i, p := range switches {
		until := to
		if i+1 < len(switches) {
			until = *switches[i+1].FinishedAt
		}
		add(cmp.Or(p.CandidateDeploymentID, &p.SourceDeploymentID), p.CreatedAt, until)
		since = *p.FinishedAt
	}
	add(current, since, to)
	return mergeSpans(spans)
}

// mergeSpans joins overlapping or touching spans of the same deployment, so that no sample
// is counted twice.
func mergeSpans(spans []store.SampleSpan) []store.SampleSpan {
	slices.SortFunc(spans, func(a, b store.SampleSpan) int {
		return cmp.Or(cmp.Compare(a.DeploymentID, b.DeploymentID), a.From.Compare(b.From))
	})
	var out []store.SampleSpan
	for _, s := range spans {
		if n := len(out); n > 0 && out[n-1].DeploymentID == s.DeploymentID && !s.From.After(out[n-1].To) {
			out[n-1].To = later(out[n-1].To, s.To)
			continue
		}
		out = append(out, s)
	}
	return out
}

func earlier(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func later(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
