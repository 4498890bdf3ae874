package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/internal/webhooktest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/store"
)

// subprocess is a modelplane subcommand running as its own process group.
type subprocess struct {
	t    *testing.T
	args []string
	cmd  *exec.Cmd
	done chan struct{}
}

func startProcess(t *testing.T, args ...string) *subprocess {
	t.Helper()
	p := &subprocess{t: t, args: args}
	p.start()
	t.Cleanup(func() { p.kill() })
	return p
}

func (p *subprocess) start() {
	p.t.Helper()
	p.cmd = modelplaneCmd(p.args...)
	p.cmd.Stderr = io.Discard
	if testing.Verbose() {
		p.cmd.Stderr = os.Stderr
	}
	require.NoError(p.t, p.cmd.Start())
	p.done = make(chan struct{})
	go func(cmd *exec.Cmd, done chan struct{}) {
		_ = cmd.Wait()
		close(done)
	}(p.cmd, p.done)
}

// kill sends SIGKILL to the whole process group and waits for the process to be gone.
func (p *subprocess) kill() {
	if p.cmd == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// TestAsync_APIAndWorkerKilledWithRequestsInFlightEachSucceedsOnce runs the control plane as
// separate processes (API, gateway, worker, agent) around an in-process Temporal and the
// test's database, queues 200 async requests with a webhook, kills the API and the worker
// with SIGKILL while the requests are queued or running, and starts them again. Every
// request must end SUCCEEDED after exactly one call to the model, and its webhook must reach
// the receiver, signed, under one delivery ID.
func TestAsync_APIAndWorkerKilledWithRequestsInFlightEachSucceedsOnce(t *testing.T) {
	ctx := context.Background()
	// A database of its own: the Temporal server below is new each run, and rows of a run
	// before (deployments, nodes, requests whose workflows it never knew) would otherwise be
	// taken up by this run's worker.
	dbURL, drop, err := pgtest.Create("cmd")
	require.NoError(t, err)
	t.Cleanup(drop) // after every process below has stopped
	require.NoError(t, pgtest.Migrate(dbURL))
	dir := t.TempDir()
	// The agent's model server outlives it: it ends with the test (after every process below).
	t.Cleanup(func() { proctest.KillRunningFrom(filepath.Join(dir, "agent")) })
	temporal, err := devstack.StartTemporal(devstack.TemporalOptions{DataDir: dir})
	require.NoError(t, err)
	t.Cleanup(func() { _ = temporal.Stop() })

	tokenFile := filepath.Join(dir, "node-token")
	require.NoError(t, os.WriteFile(tokenFile, []byte(modelplane.NewID(32)), 0o600))
	blobDir := filepath.Join(dir, "blobs")
	apiAddr, gwAddr, agentAddr := freeAddr(t), freeAddr(t), freeAddr(t)
	common := []string{"--database-url", dbURL, "--temporal-address", temporal.Address}
	apiArgs := append([]string{"api", "--listen", apiAddr, "--blob-dir", blobDir, "--node-token-file", tokenFile}, common...)
	workerMetrics := freeAddr(t)
	workerArgs := append([]string{"worker", "--blob-dir", blobDir, "--node-token-file", tokenFile,
		"--archive-base-url", "http://" + apiAddr, "--webhook-allow-private", "--metrics-listen", workerMetrics,
		"--metrics-token", "worker-metrics-token"}, common...)
	api := startProcess(t, apiArgs...)
	startProcess(t, append([]string{"gateway", "--listen", gwAddr, "--webhook-allow-private"}, common...)...)
	worker := startProcess(t, workerArgs...)
	waitHealthy(t, "http://"+apiAddr+"/healthz")
	waitHealthy(t, "http://"+gwAddr+"/readyz")
	waitHealthy(t, "http://"+workerMetrics+"/healthz")
	// The worker serves its own metrics: the autoscaler's among them.
	require.Eventually(t, func() bool {
		req, err := http.NewRequest(http.MethodGet, "http://"+workerMetrics+"/metrics", nil)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer worker-metrics-token")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return bytes.Contains(b, []byte("modelplane_autoscaler_leader 1"))
	}, 30*time.Second, 100*time.Millisecond, "the worker's /metrics shows its autoscaler leading")
	startProcess(t, "agent", "--listen", agentAddr, "--api-url", "http://"+apiAddr, "--token-file", tokenFile,
		"--state-dir", filepath.Join(dir, "agent"), "--gpu-profile", "none", "--name", "async-host")

	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ws, _, err := store.EnsureWorkspace(ctx, db, "async-crash")
	require.NoError(t, err)
	_, key, err := apikey.Create(ctx, db, ws.ID, "test", true)
	require.NoError(t, err)
	secret, err := store.RotateWebhookSecret(ctx, db, ws.ID)
	require.NoError(t, err)
	recv := webhooktest.New(secret.Secret)
	hook := httptest.NewServer(recv)
	t.Cleanup(hook.Close)

	// One replica with room for 4 requests at a time, each taking 200 ms: 200 requests need
	// 10 s, so the kill lands with most of them queued and a few at the model.
	c := client.New("http://"+apiAddr, key)
	archive := testmodelPackage(t, c, "--latency", "200ms")
	m, dep, err := c.CreateModel(ctx, apiv1.CreateModelRequest{Source: apiv1.ModelArchiveSource{
		Kind: apiv1.SourceKindModelArchive, Name: "async-crash", ArchiveID: archive}})
	require.NoError(t, err)
	code, body := call(t, http.MethodPatch, "http://"+apiAddr+"/v1/models/"+m.ID+"/deployments/"+dep.ID+"/autoscaling_settings",
		"Api-Key "+key, map[string]any{"min_replica": 1, "max_replica": 1, "concurrency_target": 4})
	require.Equal(t, http.StatusOK, code, "%s", body)
	_, err = c.WaitActive(ctx, m.ID, dep.ID, 200*time.Millisecond, nil)
	require.NoError(t, err)

	gw := client.New("http://"+gwAddr, key)
	ids := make([]string, 200)
	for i := range ids {
		ids[i], err = gw.AsyncPredict(ctx, m.ID, client.DeploymentTarget(dep.ID), client.AsyncPredictRequest{
			ModelInput: json.RawMessage(fmt.Sprintf(`{"n":%d}`, i)), WebhookEndpoint: hook.URL})
		require.NoError(t, err, "request %d", i)
	}

	countStatus := func(status modelplane.AsyncStatus) int {
		var n int
		require.NoError(t, db.GetContext(ctx, &n, `SELECT count(*) FROM async_requests WHERE workspace_id = $1 AND status = $2`, ws.ID, status))
		return n
	}
	require.Eventually(t, func() bool { return countStatus(modelplane.AsyncSucceeded) >= 8 }, 30*time.Second, 20*time.Millisecond,
		"the queue never started moving")
	running, queued := countStatus(modelplane.AsyncInProgress), countStatus(modelplane.AsyncQueued)
	api.kill()
	worker.kill()
	t.Logf("killed the API and the worker with %d requests running and %d queued", running, queued)
	require.Positive(t, queued, "the kill must land while requests are queued")
	time.Sleep(2 * time.Second)
	api.start()
	worker.start()

	settled := func() int {
		var n int
		require.NoError(t, db.GetContext(ctx, &n, `SELECT count(*) FROM async_requests
			WHERE workspace_id = $1 AND status = 'SUCCEEDED' AND webhook_status = 'SUCCEEDED'`, ws.ID))
		return n
	}
	require.Eventually(t, func() bool { return settled() == len(ids) }, 3*time.Minute, 250*time.Millisecond,
		"every request ends SUCCEEDED with its webhook delivered")
	require.Eventually(t, func() bool { return recv.Requests() == len(ids) }, time.Minute, 100*time.Millisecond,
		"every request's webhook arrives")

	var addr string
	require.NoError(t, db.GetContext(ctx, &addr, `SELECT address FROM replicas WHERE deployment_id = $1 AND state = 'READY'`, dep.ID))
	resp, err := http.Get("http://" + addr + "/calls")
	require.NoError(t, err)
	defer resp.Body.Close()
	calls := map[string]int{}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&calls))
	assert.Empty(t, recv.Bad(), "every webhook is signed and well formed")
	for _, id := range ids {
		assert.Equal(t, 1, calls[id], "request %s reaches the model exactly once", id)
		assert.Len(t, recv.Deliveries(id), 1, "request %s has one delivery ID: %v", id, recv.Deliveries(id))
		r, err := store.GetAsyncRequest(ctx, db, ws.ID, id)
		require.NoError(t, err)
		assert.Equal(t, 1, r.Attempts, "request %s took one attempt", id)
		assert.Equal(t, modelplane.WebhookSucceeded, r.WebhookStatus, "request %s", id)
	}
}

func waitHealthy(t *testing.T, url string) {
	t.Helper()
	require.Eventually(t, func() bool {
		resp, err := http.Get(url)
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	}, 60*time.Second, 50*time.Millisecond, "%s never answered 200", url)
}

// testmodelPackage builds cmd/testmodel, packs it as a process-runtime model with args and
// uploads it; it returns the archive ID.
func testmodelPackage(t *testing.T, c *client.Client, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	out, err := exec.Command("go", "build", "-o", filepath.Join(dir, "testmodel"), "github.com/modelplane/modelplane/cmd/testmodel").CombinedOutput()
	require.NoError(t, err, "building the test model: %s", out)
	command, err := json.Marshal(append([]string{"./testmodel"}, args...))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"),
		[]byte("model_name: testmodel\ncommand: "+string(command)+"\n"), 0o644))
	var buf bytes.Buffer
	_, err = modelpkg.Pack(dir, &buf)
	require.NoError(t, err)
	a, err := c.UploadArchive(context.Background(), &buf)
	require.NoError(t, err)
	return a.ID
}
