package agent_test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/internal/freeport"
)

// customServerPackage is a Truss docker_server package without a base image (process
// runtime) that runs testdata/custom_server.py with startCommand; extra is appended to its
// config.yaml.
func customServerPackage(t *testing.T, startCommand string, serverPort int, extra string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	src, err := os.ReadFile("testdata/custom_server.py")
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "server.py"), src, 0o644))
	config := fmt.Sprintf(`model_name: custom server
docker_server:
  start_command: %s
  server_port: %d
  predict_endpoint: /predict
  readiness_endpoint: /ready
  liveness_endpoint: /live
%s`, startCommand, serverPort, extra)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644))
	return pkg(t, dir)
}

func post(t *testing.T, url string) {
	t.Helper()
	resp, err := http.Post(url, "application/json", nil)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode)
}

func TestAgent_CustomServerWithPortVariableGetsAPortOfItsOwn(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	url, sum := customServerPackage(t, `python3 server.py "${PORT}"`, 8000, "")
	first, second := newID(), newID()
	n.mustStart(startReq(first, url, sum, 0))
	n.mustStart(startReq(second, url, sum, 0))
	a, b := n.waitState(first, modelplane.ReplicaReady), n.waitState(second, modelplane.ReplicaReady)
	require.NotEqual(t, a.Address, b.Address, "each replica of a $PORT server listens on its own port")
	require.Equal(t, "/ready", a.HealthPath)
	require.Equal(t, "/predict", a.PredictPath)
	require.Equal(t, "/live", a.LivenessPath)
	require.Equal(t, "/websocket", a.WebsocketPath)
	require.Equal(t, "process", a.Runtime)

	status, out := predict(t, a.Address, a.PredictPath, `{"x": 1}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, map[string]any{"x": float64(1)}, out["input"])
	_, port, _ := net.SplitHostPort(a.Address)
	require.Equal(t, port, strconv.Itoa(int(out["port"].(float64))))
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+first, nil, token)
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+second, nil, token)
}

func TestAgent_CustomServerWithFixedPortListensOnServerPortAndASecondReplicaFailsFast(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	port, err := freeport.One()
	require.NoError(t, err)
	url, sum := customServerPackage(t, fmt.Sprintf("python3 server.py %d", port), port, "")
	first := newID()
	n.mustStart(startReq(first, url, sum, 0))
	r := n.waitState(first, modelplane.ReplicaReady)
	require.Equal(t, fmt.Sprintf("127.0.0.1:%d", port), r.Address, "a server without $PORT is reached on its server_port")
	status, _ := predict(t, r.Address, r.PredictPath, `{}`)
	require.Equal(t, http.StatusOK, status)

	second := newID()
	start := time.Now()
	n.mustStart(startReq(second, url, sum, 0))
	failed := n.waitState(second, modelplane.ReplicaFailed)
	require.Less(t, time.Since(start), 10*time.Second, "the second replica fails at once, not after its start timeout")
	require.Contains(t, failed.Error, fmt.Sprintf("server_port %d is taken", port))
	require.Contains(t, failed.Error, first, "the reason names the replica holding the port")
	require.Contains(t, failed.Error, "$PORT", "the reason says how to run several replicas")
	require.Len(t, replicaProcesses(second), 0, "no second server was started")

	// Freed, the port serves the next replica.
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+first, nil, token)
	third := newID()
	n.mustStart(startReq(third, url, sum, 0))
	require.Equal(t, r.Address, n.waitState(third, modelplane.ReplicaReady).Address)
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+third, nil, token)
}

func TestAgent_CustomServerOnPortTakenByAnotherProcessFailsFast(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	port := ln.Addr().(*net.TCPAddr).Port
	url, sum := customServerPackage(t, fmt.Sprintf("python3 server.py %d", port), port, "")
	id := newID()
	n.mustStart(startReq(id, url, sum, 0))
	failed := n.waitState(id, modelplane.ReplicaFailed)
	require.Contains(t, failed.Error, fmt.Sprintf("docker_server.server_port %d is taken on this node", port))
	require.Contains(t, failed.Error, "$PORT")
}

func TestAgent_CustomServerWhoseLivenessFailsIsRestartedInPlaceAndServesAgain(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	url, sum := customServerPackage(t, `python3 server.py $PORT`, 8000, `runtime:
  health_checks:
    restart_check_delay_seconds: 0
    restart_threshold_seconds: 1
`)
	id := newID()
	n.mustStart(startReq(id, url, sum, 0))
	before := n.waitState(id, modelplane.ReplicaReady)
	require.Zero(t, before.Restarts)
	_, old := predict(t, before.Address, "/predict", `{}`)

	post(t, "http://"+before.Address+"/break")
	var after = before
	require.Eventually(t, func() bool {
		after = n.replica(id)
		return after.Restarts == 1 && after.State == modelplane.ReplicaReady
	}, 20*time.Second, 50*time.Millisecond, "the replica is restarted once its liveness failed for the threshold")
	require.Equal(t, before.Address, after.Address, "a restart in place keeps the port")
	status, out := predict(t, after.Address, "/predict", `{}`)
	require.Equal(t, http.StatusOK, status)
	require.NotEqual(t, old["pid"], out["pid"], "a new server answers")
	for _, p := range replicaProcesses(id) {
		require.NotEqual(t, int(old["pid"].(float64)), p.PID, "the broken server is gone")
	}
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
}

func TestAgent_CustomServerWhoseReadinessFailsLeavesRotationAfterTheStopTrafficThreshold(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	url, sum := customServerPackage(t, `python3 server.py $PORT`, 8000, `runtime:
  health_checks:
    stop_traffic_threshold_seconds: 1
`)
	id := newID()
	n.mustStart(startReq(id, url, sum, 0))
	r := n.waitState(id, modelplane.ReplicaReady)
	post(t, "http://"+r.Address+"/unready")
	broke := time.Now()
	// With a 100 ms supervise interval, three misses would take it out after 0.3 s: the
	// threshold holds it in rotation for a second.
	time.Sleep(600 * time.Millisecond)
	require.Equal(t, modelplane.ReplicaReady, n.replica(id).State, "in rotation until the threshold has passed")
	out := n.waitState(id, modelplane.ReplicaStarting)
	require.GreaterOrEqual(t, time.Since(broke), time.Second)
	require.Equal(t, "health check failing", out.Error)
	require.Zero(t, out.Restarts, "readiness alone restarts nothing")
	require.NotEmpty(t, replicaProcesses(id), "the server still runs")
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
}

func TestAgent_CustomServerNotReadyWithinTheStartupThresholdFails(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	url, sum := customServerPackage(t, `sleep 60 || echo $PORT`, 8000, `runtime:
  health_checks:
    startup_threshold_seconds: 1
`)
	id := newID()
	n.mustStart(startReq(id, url, sum, 0))
	failed := n.waitState(id, modelplane.ReplicaFailed)
	require.True(t, strings.HasPrefix(failed.Error, "no successful health check on /ready within 1s"), failed.Error)
}
