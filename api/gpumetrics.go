package api

import (
	"context"
	"log/slog"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// nodeMetricsTimeout bounds the database read behind the node and GPU gauges, so a slow
// database does not stall a scrape.
const nodeMetricsTimeout = 2 * time.Second

// The node and GPU gauges, as the nodes' agents last reported them. A GPU is a whole GPU;
// gpu is its index on the node.
var (
	nodeReadyDesc = prometheus.NewDesc("modelplane_node_ready",
		"1 when the node takes replicas (READY), 0 when it is draining or has missed its heartbeats.", []string{"node"}, nil)
	gpuHealthyDesc = prometheus.NewDesc("modelplane_gpu_healthy",
		"1 when the GPU is healthy, 0 when its agent marked it unhealthy (XID errors, lost).", []string{"node", "gpu", "name"}, nil)
	gpuMemoryUsedDesc = prometheus.NewDesc("modelplane_gpu_memory_used_bytes",
		"GPU memory in use.", []string{"node", "gpu"}, nil)
	gpuMemoryTotalDesc = prometheus.NewDesc("modelplane_gpu_memory_total_bytes",
		"GPU memory in all.", []string{"node", "gpu"}, nil)
	gpuUtilizationDesc = prometheus.NewDesc("modelplane_gpu_utilization",
		"GPU utilization, percent.", []string{"node", "gpu"}, nil)
)

// nodeCollector reports every node's GPUs from the nodes table when scraped: the API is
// where agents report, so one API's scrape covers the fleet (every API process answers the
// same).
type nodeCollector struct {
	db  sqlx.QueryerContext
	log *slog.Logger
}

func (c *nodeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{nodeReadyDesc, gpuHealthyDesc, gpuMemoryUsedDesc, gpuMemoryTotalDesc, gpuUtilizationDesc} {
		ch <- d
	}
}

func (c *nodeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), nodeMetricsTimeout)
	defer cancel()
	nodes, err := store.ListNodes(ctx, c.db)
	if err != nil {
		c.log.Warn("reading nodes for metrics", "err", err)
		return
	}
	for _, n := range nodes {
		ch <- prometheus.MustNewConstMetric(nodeReadyDesc, prometheus.GaugeValue, gauge01(n.State == modelplane.NodeReady), n.Name)
		for _, g := range n.GPUs {
			idx := strconv.Itoa(g.Index)
			ch <- prometheus.MustNewConstMetric(gpuHealthyDesc, prometheus.GaugeValue, gauge01(g.Healthy), n.Name, idx, g.Name)
			ch <- prometheus.MustNewConstMetric(gpuMemoryUsedDesc, prometheus.GaugeValue, float64(g.MemoryUsedBytes), n.Name, idx)
			ch <- prometheus.MustNewConstMetric(gpuMemoryTotalDesc, prometheus.GaugeValue, float64(g.MemoryTotalBytes), n.Name, idx)
			ch <- prometheus.MustNewConstMetric(gpuUtilizationDesc, prometheus.GaugeValue, float64(g.UtilizationPercent), n.Name, idx)
		}
	}
}

// gauge01 is a yes-or-no gauge's value.
func gauge01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
