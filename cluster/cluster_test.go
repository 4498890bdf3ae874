//go:build cluster

package cluster_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/freeport"
	"github.com/modelplane/modelplane/internal/s3test"
	"github.com/modelplane/modelplane/internal/toolbuild"
	"github.com/modelplane/modelplane/internal/webhooktest"
	"github.com/modelplane/modelplane/store"
)

// repoRoot is the module's root, found from this file.
func repoRoot(t *testing.T) string {
	_, file, _, ok := runtime.Caller(0)
	require.True(t, ok)
	return filepath.Dir(filepath.Dir(file))
}

// goBuild builds a main package of the module into dir.
func goBuild(t *testing.T, dir, name, pkg string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	b, err := exec.Command("go", "build", "-o", out, pkg).CombinedOutput()
	require.NoError(t, err, "go build %s: %s", pkg, b)
	return out
}

// addr is a free 127.0.0.1 address.
func addr(t *testing.T) string {
	t.Helper()
	p, err := freeport.One()
	require.NoError(t, err)
	return "127.0.0.1:" + strconv.Itoa(p)
}

// cli runs a modelplane command to its end and returns its standard output.
func cli(t *testing.T, bin string, env []string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Run(), "modelplane %s: %s", strings.Join(args, " "), stderr.String())
	return strings.TrimSpace(stdout.String())
}

// modelDir makes a model package running the test model with args, needing accelerator.
func modelDir(t *testing.T, testmodel, name, accelerator string, args ...string) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile(testmodel)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "testmodel"), b, 0o755))
	command, err := json.Marshal(append([]string{"./testmodel"}, args...))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("model_name: "+name+"\ncommand: "+string(command)+
		"\nresources:\n  accelerator: "+accelerator+"\n"), 0o644))
	return dir
}

// api is the management API as a user's scripts call it.
type api struct {
	t    *testing.T
	urls []string
	key  string
}

// call sends a JSON request to the first API that takes the connection and decodes the
// answer into out; it fails the test on anything but 200.
func (a *api) call(method, path string, in, out any) {
	a.t.Helper()
	var body []byte
	if in != nil {
		var err error
		body, err = json.Marshal(in)
		require.NoError(a.t, err)
	}
	g := newGateways(a.urls...)
	o := g.do(context.Background(), method, path, a.key, body)
	require.NoError(a.t, o.err, "%s %s", method, path)
	require.Equal(a.t, http.StatusOK, o.status, "%s %s: %s", method, path, o.body)
	if out != nil {
		require.NoError(a.t, json.Unmarshal(o.body, out), "%s %s: %s", method, path, o.body)
	}
}

func (a *api) client() *client.Client { return client.New(a.urls[0], a.key) }

// TestCluster runs modelplane as a fleet of processes and breaks it while it serves.
func TestCluster(t *testing.T) {
	ctx := context.Background()
	root := repoRoot(t)
	// Not t.TempDir: the postgres user and the replicas' own users must pass through it.
	dir, err := os.MkdirTemp("", "modelplane-cluster-")
	require.NoError(t, err)
	require.NoError(t, os.Chmod(dir, 0o711))
	t.Cleanup(func() { _ = os.RemoveAll(dir) })

	bin := goBuild(t, dir, "modelplane", "github.com/modelplane/modelplane/cmd/modelplane")
	testmodel := goBuild(t, dir, "testmodel", "github.com/modelplane/modelplane/cmd/testmodel")
	temporalBin, err := toolbuild.Tool{Name: "temporal-server", ModuleDir: filepath.Join(root, "internal", "clustertest", "temporalserver"),
		Requires: "go.temporal.io/server", Package: "go.temporal.io/server/cmd/server", Env: "MODELPLANE_TEST_TEMPORAL_SERVER"}.Binary()
	require.NoError(t, err)

	// PostgreSQL: a cluster of the test's own, so that it can be restarted.
	pgDir := filepath.Join(dir, "postgres")
	pgPort, err := freeport.One()
	require.NoError(t, err)
	pg, err := devstack.StartPrivatePostgres(ctx, pgDir, pgPort)
	require.NoError(t, err)
	t.Cleanup(func() { _ = pg.Stop() })
	dbURL := pg.URL
	cli(t, bin, nil, "migrate", "--database-url", dbURL)
	// SeaweedFS as the S3 store.
	s3, err := s3test.Start()
	require.NoError(t, err)
	t.Cleanup(s3.Stop)
	s3Args := []string{"--blob-store", "s3", "--s3-bucket", s3.Bucket, "--s3-endpoint", s3.Endpoint, "--s3-path-style",
		"--s3-region", s3test.Region, "--s3-prefix", s3test.Prefix(), "--s3-access-key-id", s3.AccessKeyID}
	s3Env := []string{"MODELPLANE_S3_SECRET_ACCESS_KEY=" + s3.SecretKey}

	// The fleet last: its processes stop (and, on a failure, their logs are printed) before
	// PostgreSQL and SeaweedFS do.
	f := newFleet(t, dir)
	f.note("PostgreSQL on port %d, schema migrated; SeaweedFS up", pgPort)

	// Temporal: the official server on that PostgreSQL, from deploy/temporal/config.yaml, its
	// schema made by `modelplane temporal setup-schema`.
	temporalDB := fmt.Sprintf("postgres://postgres@127.0.0.1:%d/temporal?sslmode=disable", pgPort)
	t.Log(cli(t, bin, nil, "temporal", "setup-schema", "--database-url", temporalDB))
	ports, err := freeport.Pick(9)
	require.NoError(t, err)
	temporalAddr := "127.0.0.1:" + strconv.Itoa(ports[0])
	temporalEnv := []string{"POSTGRES_SEEDS=127.0.0.1", "DB_PORT=" + strconv.Itoa(pgPort), "POSTGRES_USER=postgres",
		"NUM_HISTORY_SHARDS=4", "BIND_ON_IP=127.0.0.1", "TEMPORAL_BROADCAST_ADDRESS=127.0.0.1",
		"DYNAMIC_CONFIG_FILE_PATH=" + filepath.Join(root, "deploy", "temporal", "dynamicconfig.yaml"),
		"FRONTEND_GRPC_PORT=" + strconv.Itoa(ports[0]), "FRONTEND_MEMBERSHIP_PORT=" + strconv.Itoa(ports[1]),
		"HISTORY_GRPC_PORT=" + strconv.Itoa(ports[2]), "HISTORY_MEMBERSHIP_PORT=" + strconv.Itoa(ports[3]),
		"MATCHING_GRPC_PORT=" + strconv.Itoa(ports[4]), "MATCHING_MEMBERSHIP_PORT=" + strconv.Itoa(ports[5]),
		"WORKER_GRPC_PORT=" + strconv.Itoa(ports[6]), "WORKER_MEMBERSHIP_PORT=" + strconv.Itoa(ports[7]),
		"PROMETHEUS_PORT=" + strconv.Itoa(ports[8])}
	temporal := f.start("temporal-server", "temporal", temporalBin, temporalEnv,
		"--config-file", filepath.Join(root, "deploy", "temporal", "config.yaml"), "--allow-no-auth", "start")
	common := []string{"--database-url", dbURL, "--temporal-address", temporalAddr}
	t.Log(cli(t, bin, nil, "temporal", "register", "--timeout", "3m", "--temporal-address", temporalAddr))
	f.note("Temporal server up, namespace registered")

	keyFile := filepath.Join(dir, "secrets-key")
	require.NoError(t, os.WriteFile(keyFile, []byte(base64.StdEncoding.EncodeToString(bytes.Repeat([]byte{7}, 32))), 0o600))

	// Two APIs, two workers, two gateways.
	apiAddrs := []string{addr(t), addr(t)}
	var apis, workers, gws []*proc
	for i, a := range apiAddrs {
		args := append([]string{"api", "--listen", a, "--secrets-key-file", keyFile, "--blob-dir", filepath.Join(dir, fmt.Sprintf("api%d", i+1))}, s3Args...)
		apis = append(apis, f.start(fmt.Sprintf("api-%d", i+1), "api", bin, s3Env, append(args, common...)...))
	}
	workerHealth := []string{addr(t), addr(t)}
	for i, w := range workerHealth {
		args := append([]string{"worker", "--secrets-key-file", keyFile, "--archive-base-url", "http://" + apiAddrs[i],
			"--webhook-allow-private", "--metrics-listen", w, "--blob-dir", filepath.Join(dir, fmt.Sprintf("worker%d", i+1))}, s3Args...)
		workers = append(workers, f.start(fmt.Sprintf("worker-%d", i+1), "worker", bin, s3Env, append(args, common...)...))
	}
	gwAddrs := []string{addr(t), addr(t)}
	for i, g := range gwAddrs {
		gws = append(gws, f.start(fmt.Sprintf("gateway-%d", i+1), "gateway", bin, nil,
			append([]string{"gateway", "--listen", g, "--id", fmt.Sprintf("gateway-%d", i+1), "--webhook-allow-private"}, common...)...))
	}
	for _, a := range apiAddrs {
		waitOK(t, "http://"+a+"/readyz", 2*time.Minute)
	}
	for _, w := range workerHealth {
		waitOK(t, "http://"+w+"/readyz", 2*time.Minute)
	}
	for _, g := range gwAddrs {
		waitOK(t, "http://"+g+"/readyz", 2*time.Minute)
	}

	// Three agents, each with a token of its own.
	type node struct {
		name, profile, listen, token string
		p                            *proc
	}
	nodes := []*node{{name: "h200", profile: "h200"}, {name: "dgxa100", profile: "dgxa100"}, {name: "cpu", profile: "none"}}
	for i, n := range nodes {
		n.listen = addr(t)
		n.token = cli(t, bin, nil, "nodes", "token", "create", "--name", n.name, "--database-url", dbURL, "--secrets-key-file", keyFile)
		tokenFile := filepath.Join(dir, n.name+".token")
		require.NoError(t, os.WriteFile(tokenFile, []byte(n.token), 0o600))
		// Each agent's model servers on a loopback address of their own, as on hosts of their
		// own: gateways reach them at the address the agent records.
		n.p = f.start("agent-"+n.name, "agent", bin, nil, "agent", "--listen", n.listen, "--api-url", "http://"+apiAddrs[i%2],
			"--replica-host", fmt.Sprintf("127.0.0.%d", i+2),
			"--token-file", tokenFile, "--state-dir", filepath.Join(dir, "agent-"+n.name), "--gpu-profile", n.profile, "--name", n.name)
	}
	db, err := sqlx.Open("postgres", dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	require.Eventually(t, func() bool {
		var ready int
		return db.Get(&ready, `SELECT count(*) FROM nodes WHERE state = 'READY'`) == nil && ready == len(nodes)
	}, time.Minute, 200*time.Millisecond, "the three agents register")
	f.note("fleet up: 2 api, 2 worker, 2 gateway, 3 agents (h200, dgxa100, none)")

	// A workspace, its admin key and webhook secret, as an operator makes them.
	key := cli(t, bin, nil, "keys", "create", "--workspace", "cluster", "--admin", "--name", "cluster-test", "--database-url", dbURL)
	userEnv := []string{"MODELPLANE_URL=http://" + apiAddrs[0], "MODELPLANE_API_KEY=" + key}
	secret := cli(t, bin, userEnv, "webhook-secret", "--rotate")
	hooks := webhooktest.New(secret)
	hookSrv := httptest.NewServer(hooks)
	t.Cleanup(hookSrv.Close)
	mgmt := &api{t: t, urls: []string{"http://" + apiAddrs[0], "http://" + apiAddrs[1]}, key: key}
	gw := newGateways("http://"+gwAddrs[0], "http://"+gwAddrs[1])

	// chat: two replicas on A100s, pushed with the CLI and promoted. Its answers' pad says
	// which deployment served them.
	var pushed struct {
		Model      apiv1.ModelV1      `json:"model"`
		Deployment apiv1.DeploymentV1 `json:"deployment"`
	}
	require.NoError(t, json.Unmarshal([]byte(cli(t, bin, userEnv, "push",
		modelDir(t, testmodel, "chat", "A100:1", "--response-bytes", "1", "--latency", "20ms"), "--promote", "-o", "json")), &pushed))
	chat, v1 := pushed.Model.ID, pushed.Deployment.ID
	twoReplicas := map[string]any{"min_replica": 2, "max_replica": 2, "concurrency_target": 8}
	mgmt.call(http.MethodPatch, "/v1/models/"+chat+"/deployments/"+v1+"/autoscaling_settings", twoReplicas, nil)
	waitReplicas(t, db, v1, 2)
	f.note("chat v1 pushed through api-1 and serving production with 2 replicas")

	// embed: scales to zero on an H200; async requests wake it.
	require.NoError(t, json.Unmarshal([]byte(cli(t, bin, userEnv, "push",
		modelDir(t, testmodel, "embed", "H200:1", "--response-bytes", "3", "--latency", "50ms"), "--promote", "-o", "json")), &pushed))
	embed, embedDep := pushed.Model.ID, pushed.Deployment.ID
	mgmt.call(http.MethodPatch, "/v1/models/"+embed+"/deployments/"+embedDep+"/autoscaling_settings",
		map[string]any{"min_replica": 0, "max_replica": 1, "scale_down_delay": 2, "autoscaling_window": 10}, nil)

	// Sync load on chat's production from now to the end, through both gateways.
	load := newTally()
	stopLoad := make(chan struct{})
	var loadDone sync.WaitGroup
	for range 4 {
		loadDone.Add(1)
		go func() {
			defer loadDone.Done()
			for {
				select {
				case <-stopLoad:
					return
				case <-time.After(100 * time.Millisecond):
				}
				o := gw.do(ctx, http.MethodPost, "/models/"+chat+"/production/predict", key, []byte(`{"text":"hi"}`))
				load.add(o, server(o.body))
			}
		}()
	}

	// v2 through Baseten's upload flow: prepare_model_upload hands out a presigned URL of
	// the S3 store, the package goes there straight, and the deployment names its key.
	v2 := createFromPresigned(t, mgmt, chat, modelDir(t, testmodel, "chat", "A100:1", "--response-bytes", "2", "--latency", "20ms"))
	mgmt.call(http.MethodPatch, "/v1/models/"+chat+"/deployments/"+v2+"/autoscaling_settings", twoReplicas, nil)
	waitReplicas(t, db, v2, 2)
	f.note("chat v2 uploaded to a presigned S3 URL, 2 replicas ready")

	// Promote with a ramp; SIGKILL a worker in the middle of it.
	mgmt.call(http.MethodPatch, "/v1/models/"+chat+"/environments/production",
		map[string]any{"promotion_settings": map[string]any{"ramp_up_while_promoting": true, "ramp_up_duration_seconds": 30}}, nil)
	mgmt.call(http.MethodPost, "/v1/models/"+chat+"/deployments/"+v2+"/promote", map[string]any{"scale_down_previous_production": true}, nil)
	var env apiv1.EnvironmentV1
	require.Eventually(t, func() bool {
		mgmt.call(http.MethodGet, "/v1/models/"+chat+"/environments/production", nil, &env)
		p := env.InProgressPromotion
		return p != nil && p.Status == modelplane.PromotionRampingUp && p.PercentTrafficToNewVersion > 0
	}, time.Minute, 200*time.Millisecond, "the promotion ramps")
	f.kill(workers[0], fmt.Sprintf("mid-ramp, %d%% to v2", env.InProgressPromotion.PercentTrafficToNewVersion))
	time.Sleep(3 * time.Second)
	f.restart(workers[0])
	_, err = mgmt.client().WaitPromoted(ctx, chat, "production", v2, 500*time.Millisecond, nil)
	require.NoError(t, err)
	waitReplicas(t, db, v1, 0)
	f.note("promotion of v2 ended; v1 scaled down")

	// SIGKILL the agent that runs chat's replicas; they serve on, and the agent adopts them
	// again when it returns.
	before := liveReplicas(t, db, v2)
	a100 := nodes[1]
	f.kill(a100.p, "running "+strconv.Itoa(len(before))+" replicas of chat v2")
	time.Sleep(5 * time.Second)
	f.restart(a100.p)
	agentClient := agentproto.NewClient("http://"+a100.listen, a100.token)
	require.Eventually(t, func() bool {
		rs, err := agentClient.Replicas(ctx)
		if err != nil {
			return false
		}
		var ready []string
		for _, r := range rs {
			if r.State == modelplane.ReplicaReady {
				ready = append(ready, r.ID)
			}
		}
		return assert.ObjectsAreEqual(sortedCopy(before), sortedCopy(ready))
	}, time.Minute, 250*time.Millisecond, "the agent adopts its replicas again")
	assert.Equal(t, before, liveReplicas(t, db, v2), "no replica of chat was replaced")
	f.note("agent-dgxa100 back; its replicas %v adopted", before)

	// Async requests with webhooks to embed, at zero: they wake it. A gateway is killed
	// while they run.
	require.Eventually(t, func() bool { return deploymentStatus(t, db, embedDep) == modelplane.DeploymentScaledToZero },
		2*time.Minute, 500*time.Millisecond, "embed scales to zero")
	f.note("embed scaled to zero")
	var asyncIDs []string
	queue := func(n int) {
		for i := range n {
			body, _ := json.Marshal(map[string]any{"model_input": map[string]any{"n": len(asyncIDs) + i}, "webhook_endpoint": hookSrv.URL})
			o := gw.do(ctx, http.MethodPost, "/models/"+embed+"/production/async_predict", key, body)
			require.NoError(t, o.err)
			require.Equal(t, http.StatusCreated, o.status, "%s", o.body)
			var r struct {
				RequestID string `json:"request_id"`
			}
			require.NoError(t, json.Unmarshal(o.body, &r))
			asyncIDs = append(asyncIDs, r.RequestID)
		}
	}
	queue(30)
	killed := gw.killing(0)
	f.kill(gws[0], "with sync and async requests in flight")
	killed()
	queue(10)
	time.Sleep(time.Second)
	gw.out[0].Store(true) // the balancer's health check has seen it gone
	time.Sleep(time.Second)
	f.restart(gws[0])
	waitOK(t, "http://"+gwAddrs[0]+"/readyz", time.Minute)
	gw.out[0].Store(false) // and its readiness check takes it back

	// The API process goes; the other serves, and it comes back.
	f.kill(apis[0], "between calls")
	var models apiv1.ModelListV1
	mgmt.call(http.MethodGet, "/v1/models", nil, &models)
	require.Len(t, models.Models, 2, "the other API answers")
	time.Sleep(2 * time.Second)
	f.restart(apis[0])
	waitOK(t, "http://"+apiAddrs[0]+"/readyz", time.Minute)

	// PostgreSQL restarts under everything.
	require.NoError(t, pg.Stop())
	f.note("PostgreSQL stopped")
	time.Sleep(2 * time.Second)
	pg, err = devstack.StartPrivatePostgres(ctx, pgDir, pgPort)
	require.NoError(t, err)
	f.note("PostgreSQL started again")
	queue(10)

	// And the Temporal server.
	f.kill(temporal, "Temporal server")
	queue(5) // accepted while Temporal is down: the gateways start their workflows when it is back
	time.Sleep(2 * time.Second)
	f.restart(temporal)
	t.Log(cli(t, bin, nil, "temporal", "register", "--timeout", "3m", "--temporal-address", temporalAddr))
	f.note("Temporal server answers again")
	queue(10)

	asyncDone := func() int {
		var n int
		require.NoError(t, db.Get(&n, `SELECT count(*) FROM async_requests WHERE id = ANY($1) AND status IN ('SUCCEEDED','FAILED','CANCELED','EXPIRED')
			AND webhook_status IN ('SUCCEEDED','FAILED')`, pq.Array(asyncIDs)))
		return n
	}
	if !assert.Eventually(t, func() bool { return asyncDone() == len(asyncIDs) }, 4*time.Minute, time.Second,
		"every async request ends and its webhook is sent") {
		var open []string
		require.NoError(t, db.Select(&open, `SELECT r.id || ': ' || r.status || ', webhook ' || r.webhook_status || ', attempts ' || r.attempts ||
			', workflow started ' || r.workflow_started || ', attempt rows ' || COALESCE((SELECT string_agg(a.attempt || ' ' || a.state || ' on ' || a.gateway_id, '; ')
			FROM async_attempts a WHERE a.request_id = r.id), 'none')
			FROM async_requests r WHERE r.id = ANY($1) AND NOT (r.status IN ('SUCCEEDED','FAILED','CANCELED','EXPIRED') AND r.webhook_status IN ('SUCCEEDED','FAILED'))`,
			pq.Array(asyncIDs)))
		t.Fatalf("async requests not ended:\n%s", strings.Join(open, "\n"))
	}

	// embed goes back to zero and a sync request wakes it, after all of the above.
	require.Eventually(t, func() bool { return deploymentStatus(t, db, embedDep) == modelplane.DeploymentScaledToZero },
		2*time.Minute, 500*time.Millisecond, "embed scales to zero again")
	wake := gw.do(ctx, http.MethodPost, "/models/"+embed+"/production/predict", key, []byte(`{"wake":true}`))
	require.NoError(t, wake.err)
	require.Equal(t, http.StatusOK, wake.status, "%s", wake.body)
	f.note("embed woken from zero by a sync request")
	time.Sleep(3 * time.Second)
	close(stopLoad)
	loadDone.Wait()
	f.checkAlive()

	// Every promotion ended once.
	var promotions []struct {
		ID       string     `db:"id"`
		Status   string     `db:"status"`
		Finished *time.Time `db:"finished_at"`
		Stages   int        `db:"stages"`
		Repeats  int        `db:"repeats"`
	}
	require.NoError(t, db.Select(&promotions, `
		SELECT p.id, p.status, p.finished_at,
		       (SELECT count(*) FROM audit_events a WHERE a.model_id = p.model_id AND a.action = 'promotion.stage'
		          AND a.actor = 'promotion:' || p.id) AS stages,
		       (SELECT count(*) - count(DISTINCT a.details->>'percent_traffic_to_new_version') FROM audit_events a
		          WHERE a.model_id = p.model_id AND a.action = 'promotion.stage' AND a.actor = 'promotion:' || p.id) AS repeats
		FROM promotions p WHERE p.model_id = ANY($1)`, pq.Array([]string{chat, embed})))
	require.Len(t, promotions, 3, "chat's two promotions and embed's one")
	for _, p := range promotions {
		assert.Equal(t, "SUCCEEDED", p.Status, "promotion %s", p.ID)
		assert.NotNil(t, p.Finished, "promotion %s has ended", p.ID)
		assert.Zero(t, p.Repeats, "promotion %s ran no stage twice", p.ID)
	}
	mgmt.call(http.MethodGet, "/v1/models/"+chat+"/environments/production", nil, &env)
	assert.Nil(t, env.InProgressPromotion)
	assert.Equal(t, v2, env.CurrentDeployment.ID)

	assert.Empty(t, liveReplicas(t, db, v1), "v1, scaled down by the promotion, stays at zero")
	var addrs []string
	require.NoError(t, db.Select(&addrs, `SELECT DISTINCT split_part(address, ':', 1) FROM replicas WHERE address <> '' ORDER BY 1`))
	assert.Equal(t, []string{"127.0.0.2", "127.0.0.3"}, addrs,
		"replicas were recorded, and served, at their agents' replica hosts: embed's on h200, chat's on dgxa100")

	// No GPU is held by a replica that no longer exists: not in the record, not on an agent.
	var strayGPUs []string
	require.NoError(t, db.Select(&strayGPUs, `SELECT g.uuid FROM gpus g LEFT JOIN replicas r ON r.id = g.assigned_replica_id
		WHERE g.assigned_replica_id IS NOT NULL AND (r.id IS NULL OR r.state IN ('STOPPED', 'FAILED'))`))
	assert.Empty(t, strayGPUs, "GPUs assigned to replicas that are gone")
	liveOnAgents := 0
	for _, n := range nodes {
		rs, err := agentproto.NewClient("http://"+n.listen, n.token).Replicas(ctx)
		require.NoError(t, err)
		for _, r := range rs {
			if r.State == modelplane.ReplicaStopped || r.State == modelplane.ReplicaFailed {
				continue
			}
			liveOnAgents++
			var state string
			require.NoError(t, db.Get(&state, `SELECT state FROM replicas WHERE id = $1`, r.ID), "agent %s runs %s", n.name, r.ID)
			assert.NotContains(t, []string{"STOPPED", "FAILED"}, state, "agent %s runs replica %s, which the record says is %s", n.name, r.ID, state)
		}
	}

	// Every async request ended exactly once, with one delivery ID.
	var workspaceID string
	require.NoError(t, db.Get(&workspaceID, `SELECT workspace_id FROM models WHERE id = $1`, embed))
	for _, id := range asyncIDs {
		r, err := store.GetAsyncRequest(ctx, db, workspaceID, id)
		require.NoError(t, err)
		assert.Equal(t, modelplane.AsyncSucceeded, r.Status, "async request %s", id)
		assert.Equal(t, modelplane.WebhookSucceeded, r.WebhookStatus, "async request %s", id)
		assert.Len(t, hooks.Deliveries(id), 1, "async request %s has one delivery ID: %v", id, hooks.Deliveries(id))
		for d, n := range hooks.Deliveries(id) {
			assert.Equal(t, 1, n, "async request %s: delivery %s arrived %d times", id, d, n)
		}
	}
	assert.Empty(t, hooks.Bad(), "every webhook is signed and well formed")
	deliveredOnce := 0
	for _, id := range asyncIDs {
		if d := hooks.Deliveries(id); len(d) == 1 {
			deliveredOnce++
		}
	}

	// Usage adds up: one interval per replica, open exactly while it lives; the usage
	// route's totals are its rows' sum and what the intervals give.
	var badIntervals []string
	require.NoError(t, db.Select(&badIntervals, `
		SELECT r.id || ' (' || r.state || ', ' || count(u.id) || ' intervals, ' || count(u.id) FILTER (WHERE u.ended_at IS NULL) || ' open)'
		FROM replicas r LEFT JOIN usage_intervals u ON u.replica_id = r.id
		GROUP BY r.id, r.state
		HAVING count(u.id) <> 1 OR (count(u.id) FILTER (WHERE u.ended_at IS NULL) = 1) <> (r.state NOT IN ('STOPPED', 'FAILED'))`))
	assert.Empty(t, badIntervals, "replicas whose usage intervals are not one, open while live")
	var usage apiv1.UsageV1
	mgmt.call(http.MethodGet, "/v1/usage", nil, &usage)
	var rowsGPU, rowsReplica float64
	for _, r := range usage.Rows {
		rowsGPU += r.GPUSeconds
		rowsReplica += r.ReplicaSeconds
	}
	var recorded float64
	require.NoError(t, db.Get(&recorded, `SELECT COALESCE(sum(gpu_count * extract(epoch FROM (LEAST(COALESCE(ended_at, $1), $1) - started_at))), 0)
		FROM usage_intervals WHERE started_at < $1`, usage.End))
	assert.InDelta(t, usage.Totals.GPUSeconds, rowsGPU, 0.01*rowsGPU+1, "the totals are the rows' sum")
	assert.InDelta(t, usage.Totals.ReplicaSeconds, rowsReplica, 0.01*rowsReplica+1)
	assert.InDelta(t, recorded, usage.Totals.GPUSeconds, 0.01*recorded+1, "usage is what the intervals hold")
	assert.InDelta(t, usage.Totals.ReplicaSeconds, usage.Totals.GPUSeconds, 0.01*rowsGPU+1, "each replica holds one GPU")

	// No request sent to a live gateway failed.
	assert.Empty(t, load.failures(), "requests that failed other than in flight on a killed gateway")
	require.Positive(t, load.byServer["v2"], "v2 served after its promotion")

	summary(f, load, len(asyncIDs), deliveredOnce, liveOnAgents, usage)
}
