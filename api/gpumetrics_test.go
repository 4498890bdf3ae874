package api_test

import (
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/apitest"
)

func TestMetrics_GPUHealthMemoryAndNodeReadinessFromHeartbeats(t *testing.T) {
	f := nodeFixture(t)
	name := "gpu-" + modelplane.NewID(6)
	hb := sampleHeartbeat(name)
	hb.Inventory.GPUs[0].MemoryUsedBytes = 1 << 30
	hb.Inventory.GPUs[0].UtilizationPercent = 42
	require.Equal(t, http.StatusOK, heartbeat(t, f, nodeToken, hb).Code)

	req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
	req.Header.Set("Authorization", "Bearer "+apitest.MetricsToken)
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	require.Equal(t, http.StatusOK, rec.Code)
	body := rec.Body.String()
	for _, want := range []string{
		`modelplane_node_ready{node="` + name + `"} 1`,
		`modelplane_gpu_healthy{gpu="0",name="NVIDIA H200",node="` + name + `"} 1`,
		`modelplane_gpu_healthy{gpu="1",name="NVIDIA H200",node="` + name + `"} 0`,
		`modelplane_gpu_memory_used_bytes{gpu="0",node="` + name + `"} 1.073741824e+09`,
		`modelplane_gpu_utilization{gpu="0",node="` + name + `"} 42`,
	} {
		assert.Contains(t, body, want)
	}
}
