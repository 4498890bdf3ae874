package gateway

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelplane/modelplane/internal/promutil"
	"github.com/modelplane/modelplane/store"
)

// requestLabels are what a request's series are labelled with; IDs are set only once they
// are known to exist, so made-up IDs cannot grow the series without bound.
type requestLabels struct {
	modelID, deploymentID, environment, phase string
	// async is set for the gateway's own requests that carry out async attempts.
	async bool
}

type metrics struct {
	requests *prometheus.CounterVec
	total    *prometheus.HistogramVec
	ttfb     *prometheus.HistogramVec
	cold     *prometheus.HistogramVec
	// queueTime is how long async requests waited before their first attempt.
	queueTime *prometheus.HistogramVec
	// shadow counts the requests chosen for a shadow copy by outcome.
	shadow *prometheus.CounterVec
	// The series a request lands in, found once per label set rather than hashed per request.
	counters   sync.Map // counterKey -> prometheus.Counter
	histograms sync.Map // requestLabels -> *seriesPair
}

type counterKey struct {
	requestLabels
	status int
}

type seriesPair struct{ total, ttfb prometheus.Observer }

// latencyBuckets span a fast model's milliseconds to a long generation's minutes.
var latencyBuckets = []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300}

func newMetrics(reg prometheus.Registerer, g *Gateway) *metrics {
	perEnv := []string{"model_id", "deployment_id", "environment", "rollout_phase"}
	m := &metrics{
		requests: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelplane_inference_requests_total",
			Help: "Inference requests by model, deployment, environment and status code.",
		}, append(perEnv[:4:4], "status_code", "is_async"))),
		total: promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelplane_end_to_end_response_time_seconds",
			Help:    "Time from a request's arrival at the gateway until its answer ended.",
			Buckets: latencyBuckets,
		}, perEnv)),
		ttfb: promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelplane_time_to_first_byte_seconds",
			Help:    "Time from a request's arrival at the gateway until the model server's answer began.",
			Buckets: latencyBuckets,
		}, perEnv)),
		cold: promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelplane_cold_start_seconds",
			Help:    "Time from a request's arrival for a deployment at zero until it was forwarded to a replica.",
			Buckets: []float64{.05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600},
		}, []string{"model_id", "deployment_id"})),
		queueTime: promutil.Register(reg, prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modelplane_time_in_async_queue_seconds",
			Help:    "Time from an async request's acceptance until it left the queue for its first attempt.",
			Buckets: []float64{.1, .5, 1, 5, 10, 30, 60, 300, 600, 1800, 3600, 7200, 21600, 86400, 259200},
		}, []string{"model_id", "deployment_id"})),
		shadow: promutil.Register(reg, prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modelplane_shadow_copies_total",
			Help: "Requests chosen for a copy to an environment's shadow deployment, by outcome: equal, different or error once compared, or dropped when not sent.",
		}, []string{"model_id", "environment", "deployment_id", "outcome"})),
	}
	promutil.Register(reg, &loadCollector{g: g})
	promutil.Register(reg, &asyncQueueCollector{g: g})
	return m
}

// observe counts a finished request once, whatever happened to it.
func (m *metrics) observe(l requestLabels, w *statusWriter, start time.Time) {
	status := w.status
	if status == 0 {
		status = statusClientClosed
	}
	key := counterKey{l, status}
	c, ok := m.counters.Load(key)
	if !ok {
		c, _ = m.counters.LoadOrStore(key, m.requests.WithLabelValues(l.modelID, l.deploymentID, l.environment, l.phase, strconv.Itoa(status), strconv.FormatBool(l.async)))
	}
	c.(prometheus.Counter).Inc()
	if l.deploymentID == "" {
		return
	}
	h, ok := m.histograms.Load(l)
	if !ok {
		h, _ = m.histograms.LoadOrStore(l, &seriesPair{
			total: m.total.WithLabelValues(l.modelID, l.deploymentID, l.environment, l.phase),
			ttfb:  m.ttfb.WithLabelValues(l.modelID, l.deploymentID, l.environment, l.phase),
		})
	}
	p := h.(*seriesPair)
	p.total.Observe(w.latency(time.Now(), start).Seconds())
	if w.ttfb > 0 {
		p.ttfb.Observe(w.ttfb.Seconds())
	}
}

// coldStart records how long a request waited for its deployment to wake.
func (m *metrics) coldStart(modelID, deploymentID string, d time.Duration) {
	m.cold.WithLabelValues(modelID, deploymentID).Observe(d.Seconds())
}

// loadCollector reports the current table's per-deployment gauges when scraped, so requests
// do not pay for keeping gauges.
type loadCollector struct{ g *Gateway }

var (
	concurrentDesc = prometheus.NewDesc("modelplane_concurrent_requests",
		"Requests this gateway has in flight, by deployment.", []string{"model_id", "deployment_id"}, nil)
	activeDesc = prometheus.NewDesc("modelplane_replicas_active",
		"READY replicas, by deployment.", []string{"model_id", "deployment_id"}, nil)
	startingDesc = prometheus.NewDesc("modelplane_replicas_starting",
		"Replicas being placed or started, by deployment.", []string{"model_id", "deployment_id"}, nil)
	// weightDesc ties deployments to the environments they serve, so that per-deployment
	// series (replicas) can be summed per environment, and shows a canary's split.
	weightDesc = prometheus.NewDesc("modelplane_environment_traffic_weight",
		"Percent of an environment's traffic sent to a deployment; during a promotion the previous and the candidate deployment share it.",
		[]string{"model_id", "environment", "deployment_id", "rollout_phase"}, nil)
	shadowPercentDesc = prometheus.NewDesc("modelplane_environment_shadow_percent",
		"Percent of an environment's requests copied to its shadow deployment.",
		[]string{"model_id", "environment", "deployment_id"}, nil)
)

func (c *loadCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- concurrentDesc
	ch <- activeDesc
	ch <- startingDesc
	ch <- weightDesc
	ch <- shadowPercentDesc
}

func (c *loadCollector) Collect(ch chan<- prometheus.Metric) {
	t := c.g.table.Load()
	if t == nil {
		return
	}
	for _, m := range t.models {
		for _, d := range m.deployments {
			if d.deleted {
				continue
			}
			d.load.mu.Lock()
			busy := d.load.inFlight
			d.load.mu.Unlock()
			ch <- prometheus.MustNewConstMetric(concurrentDesc, prometheus.GaugeValue, float64(busy), m.id, d.id)
			ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(len(d.replicas)), m.id, d.id)
			ch <- prometheus.MustNewConstMetric(startingDesc, prometheus.GaugeValue, float64(d.starting), m.id, d.id)
		}
		for _, e := range m.envs {
			for _, tg := range e.targets {
				ch <- prometheus.MustNewConstMetric(weightDesc, prometheus.GaugeValue, float64(tg.weight), m.id, e.name, tg.dep.id, e.phase())
			}
			if s := e.shadow; s != nil {
				ch <- prometheus.MustNewConstMetric(shadowPercentDesc, prometheus.GaugeValue, float64(s.percent), m.id, e.name, s.dep.id)
			}
		}
	}
}

// asyncQueueTimeout bounds the database read behind the queue-size gauge, so a slow database
// does not stall a scrape.
const asyncQueueTimeout = 2 * time.Second

// asyncQueueCollector reports the queued async requests of each deployment, read from the
// database when scraped: the queue is shared by all gateways, so every gateway reports the
// same numbers.
type asyncQueueCollector struct{ g *Gateway }

var asyncQueueDesc = prometheus.NewDesc("modelplane_async_queue_size",
	"Async requests queued for a deployment (across all gateways).", []string{"model_id", "deployment_id"}, nil)

func (c *asyncQueueCollector) Describe(ch chan<- *prometheus.Desc) { ch <- asyncQueueDesc }

// Collect reports every serving deployment of the table, at zero when nothing waits for it, so
// an emptied queue reads 0 rather than vanishing; a deployment that is gone leaves no series.
func (c *asyncQueueCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), asyncQueueTimeout)
	defer cancel()
	sizes, err := store.AsyncQueueSizes(ctx, c.g.opts.DB)
	if err != nil {
		c.g.log.Warn("reading async queue sizes", "err", err)
		return
	}
	type key struct{ model, deployment string }
	queued := make(map[key]int, len(sizes))
	for _, s := range sizes {
		queued[key{s.ModelID, s.DeploymentID}] = s.Queued
	}
	if t := c.g.table.Load(); t != nil {
		for _, m := range t.models {
			for _, d := range m.deployments {
				if _, ok := queued[key{m.id, d.id}]; !ok && !d.deleted {
					queued[key{m.id, d.id}] = 0
				}
			}
		}
	}
	for k, n := range queued {
		ch <- prometheus.MustNewConstMetric(asyncQueueDesc, prometheus.GaugeValue, float64(n), k.model, k.deployment)
	}
}
