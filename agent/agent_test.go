package agent_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/agent/runtime"
	"github.com/modelplane/modelplane/agent/runtime/docker"
	"github.com/modelplane/modelplane/agent/runtime/process"
	"github.com/modelplane/modelplane/internal/proctest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/nvml"
)

const token = "test-node-token-0123456789"

// testmodelBin is the test model server, built once for the package.
var testmodelBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "agent-test-")
	if err != nil {
		panic(err)
	}
	testmodelBin = filepath.Join(dir, "testmodel")
	out, err := exec.Command("go", "build", "-o", testmodelBin, "github.com/modelplane/modelplane/cmd/testmodel").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "building the test model: %v\n%s", err, out)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// node is an agent serving on loopback, as the control plane sees it.
type node struct {
	t        *testing.T
	a        *agent.Agent
	gpus     *nvml.Manager
	url      string
	stateDir string
	cancel   context.CancelFunc
	done     chan error
}

func startNode(t *testing.T, stateDir, profile string, opts ...func(*agent.Config)) *node {
	t.Helper()
	return startNodeWith(t, stateDir, profile, false, opts...)
}

// startNodeWith starts a node, with the docker runtime on the engine's default socket too
// when withDocker is set.
func startNodeWith(t *testing.T, stateDir, profile string, withDocker bool, opts ...func(*agent.Config)) *node {
	t.Helper()
	gpus, err := nvml.Open(profile, nvml.Options{})
	require.NoError(t, err)
	cfg := agent.Config{Name: "node-test", Token: token, StateDir: stateDir, StopGrace: 2 * time.Second,
		SuperviseInterval: 100 * time.Millisecond, StartTimeout: 20 * time.Second, HeartbeatInterval: 100 * time.Millisecond}
	for _, o := range opts {
		o(&cfg)
	}
	a, err := agent.New(cfg, gpus, agent.Runtimes{})
	require.NoError(t, err)
	rts := agent.Runtimes{Process: process.New(a.ID())}
	if withDocker {
		rts.Docker = docker.New(docker.Options{AgentID: a.ID()})
	}
	a.SetRuntimes(rts)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	n := &node{t: t, a: a, gpus: gpus, url: "http://" + ln.Addr().String(), stateDir: stateDir, cancel: cancel, done: make(chan error, 1)}
	go func() { n.done <- a.Run(ctx, ln) }()
	t.Cleanup(n.shutdown)
	return n
}

// shutdown stops the agent process-wide state; replicas keep running, as after a crash.
func (n *node) shutdown() {
	if n.cancel == nil {
		return
	}
	n.cancel()
	require.NoError(n.t, <-n.done)
	n.cancel = nil
	n.gpus.Close()
}

// storedReplica is the part of a replica's state-file record that tests read: the runtime
// handle, which the agent's API does not tell.
type storedReplica struct {
	ID     string          `json:"id"`
	Handle *runtime.Handle `json:"handle"`
}

// storedReplicas reads the replicas of the agent's state file in dir.
func storedReplicas(dir string) ([]storedReplica, error) {
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	if err != nil {
		return nil, err
	}
	var st struct {
		Replicas []storedReplica `json:"replicas"`
	}
	return st.Replicas, json.Unmarshal(b, &st)
}

// stopAll stops every replica still running, so no test leaves processes behind.
func stopAll(t *testing.T, stateDir string) {
	replicas, _ := storedReplicas(stateDir)
	for _, r := range replicas {
		if r.Handle != nil && r.Handle.PID > 0 {
			_ = process.New("cleanup").Stop(context.Background(), *r.Handle, time.Second)
		}
	}
}

func (n *node) call(method, path string, body any, tok string) (int, []byte) {
	n.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
	default:
		j, err := json.Marshal(b)
		require.NoError(n.t, err)
		rd = bytes.NewReader(j)
	}
	req, err := http.NewRequest(method, n.url+path, rd)
	require.NoError(n.t, err)
	req.Header.Set("Content-Type", "application/json")
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(n.t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

// mustStart posts a start request that must be accepted as new.
func (n *node) mustStart(req agentproto.StartRequest) {
	n.t.Helper()
	code, body := n.call(http.MethodPost, "/v1/replicas", req, token)
	require.Equal(n.t, http.StatusCreated, code, string(body))
}

func (n *node) replica(id string) agentproto.Replica {
	n.t.Helper()
	code, body := n.call(http.MethodGet, "/v1/replicas/"+id, nil, token)
	require.Equal(n.t, http.StatusOK, code, string(body))
	var r agentproto.Replica
	require.NoError(n.t, json.Unmarshal(body, &r))
	return r
}

func (n *node) waitState(id string, state modelplane.ReplicaState) agentproto.Replica {
	n.t.Helper()
	var r agentproto.Replica
	require.Eventually(n.t, func() bool {
		r = n.replica(id)
		return r.State == state
	}, 30*time.Second, 50*time.Millisecond, "replica %s never reached %s", id, state)
	return r
}

func (n *node) inventory() agentproto.InventoryResponse {
	n.t.Helper()
	code, body := n.call(http.MethodGet, "/v1/inventory", nil, token)
	require.Equal(n.t, http.StatusOK, code, string(body))
	var inv agentproto.InventoryResponse
	require.NoError(n.t, json.Unmarshal(body, &inv))
	return inv
}

// pkg packs dir and returns its file URL and digest.
func pkg(t *testing.T, dir string) (string, string) {
	t.Helper()
	f, err := os.Create(filepath.Join(t.TempDir(), "pkg.tar.gz"))
	require.NoError(t, err)
	defer f.Close()
	sum, err := modelpkg.Pack(dir, f)
	require.NoError(t, err)
	return "file://" + f.Name(), sum
}

// testmodelPackage is a process-runtime package that runs the test model.
func testmodelPackage(t *testing.T, args ...string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	bin, err := os.ReadFile(testmodelBin)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "testmodel"), bin, 0o755))
	command := append([]string{"./testmodel"}, args...)
	cmdJSON, _ := json.Marshal(command)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"),
		[]byte("model_name: testmodel\ncommand: "+string(cmdJSON)+"\n"), 0o644))
	return pkg(t, dir)
}

func shellPackage(t *testing.T, script string) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cmdJSON, _ := json.Marshal([]string{"/bin/sh", "-c", script})
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"),
		[]byte("model_name: shell\ncommand: "+string(cmdJSON)+"\n"), 0o644))
	return pkg(t, dir)
}

func startReq(id, url, sum string, gpus int) agentproto.StartRequest {
	return agentproto.StartRequest{ReplicaID: id, DeploymentID: "dep00001", Environment: "production",
		ArchiveURL: url, ArchiveSHA256: sum, Resources: modelplane.GPURequest{GPUCount: gpus}}
}

func predict(t *testing.T, addr, path string, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	require.NoError(t, err)
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// replicaProcesses lists the processes that carry the replica's ID.
func replicaProcesses(id string) []proctest.Process {
	return proctest.Where(func(p proctest.Process) bool {
		env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", p.PID))
		return err == nil && bytes.Contains(append([]byte("\x00"), env...), []byte("\x00"+process.EnvReplicaID+"="+id+"\x00"))
	})
}

func newID() string { return "r" + modelplane.NewID(11) }

func TestAgent_RunsTestModelOnItsGPUAndStopFreesIt(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	url, sum := testmodelPackage(t, "--load-time", "300ms")
	id := newID()

	code, body := n.call(http.MethodPost, "/v1/replicas", startReq(id, url, sum, 1), token)
	require.Equal(t, http.StatusCreated, code, string(body))
	inv := n.inventory()
	require.Len(t, inv.GPUs, 1)
	gpu := inv.GPUs[0].UUID
	require.Equal(t, id, inv.GPUs[0].AssignedReplicaID, "the GPU must be assigned at once")

	r := n.waitState(id, modelplane.ReplicaReady)
	require.Equal(t, []string{gpu}, r.GPUUUIDs)
	status, out := predict(t, r.Address, "/predict", `{"x": 1}`)
	require.Equal(t, http.StatusOK, status)
	require.Equal(t, map[string]any{"x": float64(1)}, out["output"])
	env, err := os.ReadFile(fmt.Sprintf("/proc/%d/environ", int(out["pid"].(float64))))
	require.NoError(t, err)
	env = append([]byte("\x00"), env...) // every entry now sits between NULs
	require.Contains(t, string(env), "\x00CUDA_VISIBLE_DEVICES="+gpu+"\x00")
	require.Contains(t, string(env), "\x00MODELPLANE_ENVIRONMENT=production\x00")

	// Idempotent on the replica ID: no second process.
	code, _ = n.call(http.MethodPost, "/v1/replicas", startReq(id, url, sum, 1), token)
	require.Equal(t, http.StatusOK, code)
	require.Len(t, replicaProcesses(id), 1)

	code, body = n.call(http.MethodDelete, "/v1/replicas/"+id+"?grace_seconds=5", nil, token)
	require.Equal(t, http.StatusOK, code, string(body))
	require.Equal(t, modelplane.ReplicaStopped, n.replica(id).State)
	require.Empty(t, replicaProcesses(id), "the server must be gone after DELETE")
	require.Empty(t, n.inventory().GPUs[0].AssignedReplicaID, "DELETE must free the GPU")
	code, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
	require.Equal(t, http.StatusOK, code, "a second DELETE answers the stopped replica")
}

func TestAgent_PythonEchoModelAnswers(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	url, sum := pkg(t, "../examples/models/echo")
	id := newID()
	code, body := n.call(http.MethodPost, "/v1/replicas", startReq(id, url, sum, 0), token)
	require.Equal(t, http.StatusCreated, code, string(body))
	r := n.waitState(id, modelplane.ReplicaReady)
	require.Equal(t, "/v1/models/model", r.HealthPath)
	status, out := predict(t, r.Address, r.PredictPath, `{"text": "hi"}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	require.Equal(t, map[string]any{"text": "hi"}, out["echo"])
	require.Equal(t, "production", out["environment"])

	code, body = n.call(http.MethodGet, "/v1/replicas/"+id+"/logs?stream=stdout&tail=50", nil, token)
	require.Equal(t, http.StatusOK, code)
	require.NotEmpty(t, strings.TrimSpace(string(body)), "the server's output must be readable through the agent")
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
}

func TestAgent_TakenGPUIs409WithReason(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	url, sum := testmodelPackage(t)
	first := newID()
	code, _ := n.call(http.MethodPost, "/v1/replicas", startReq(first, url, sum, 1), token)
	require.Equal(t, http.StatusCreated, code)

	code, body := n.call(http.MethodPost, "/v1/replicas", startReq(newID(), url, sum, 1), token)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, string(body), first, "the reason names the replica holding the GPU")

	code, body = n.call(http.MethodPost, "/v1/replicas", startReq(newID(), url, sum, 2), token)
	require.Equal(t, http.StatusConflict, code)
	require.Contains(t, string(body), "GPU")

	other := startReq(first, url, sum, 1)
	other.DeploymentID = "dep00002"
	code, _ = n.call(http.MethodPost, "/v1/replicas", other, token)
	require.Equal(t, http.StatusConflict, code, "a replica ID may not be reused for another deployment")
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+first, nil, token)
}

func TestAgent_ReadoptsLiveReplicaAfterRestart(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	url, sum := testmodelPackage(t)
	id := newID()
	n.mustStart(startReq(id, url, sum, 1))
	before := n.waitState(id, modelplane.ReplicaReady)
	pids := replicaProcesses(id)
	require.Len(t, pids, 1)
	n.shutdown()

	// The server keeps serving while the agent is away.
	status, _ := predict(t, before.Address, "/predict", `{}`)
	require.Equal(t, http.StatusOK, status)

	n2 := startNode(t, dir, "h200")
	after := n2.waitState(id, modelplane.ReplicaReady)
	require.Equal(t, before.Address, after.Address)
	require.Equal(t, before.GPUUUIDs, after.GPUUUIDs)
	require.Equal(t, pids, replicaProcesses(id), "the same process, not a new one")
	require.Equal(t, id, n2.inventory().GPUs[0].AssignedReplicaID, "the GPU stays assigned")
	status, _ = predict(t, after.Address, "/predict", `{}`)
	require.Equal(t, http.StatusOK, status)

	code, _ := n2.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, replicaProcesses(id))
}

func TestAgent_ReplicaThatDiedWhileAwayIsFailedAndFreed(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	url, sum := testmodelPackage(t)
	id := newID()
	n.mustStart(startReq(id, url, sum, 1))
	n.waitState(id, modelplane.ReplicaReady)
	n.shutdown()
	for _, p := range replicaProcesses(id) {
		require.NoError(t, process.New("x").Stop(context.Background(), handleOf(t, dir, id, p.PID), time.Second))
	}

	n2 := startNode(t, dir, "h200")
	r := n2.replica(id)
	require.Equal(t, modelplane.ReplicaFailed, r.State)
	require.Contains(t, r.Error, "while the agent was down")
	require.Empty(t, n2.inventory().GPUs[0].AssignedReplicaID)
}

func TestAgent_StopsProcessesThatBelongToNoReplica(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "none")
	url, sum := testmodelPackage(t)
	id := newID()
	n.mustStart(startReq(id, url, sum, 0))
	n.waitState(id, modelplane.ReplicaReady)
	n.shutdown()
	require.Len(t, replicaProcesses(id), 1)

	// Forget the replica, as if the state were lost after the process started.
	b, err := os.ReadFile(filepath.Join(dir, "state.json"))
	require.NoError(t, err)
	var st map[string]any
	require.NoError(t, json.Unmarshal(b, &st))
	st["replicas"] = []any{}
	b, _ = json.Marshal(st)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "state.json"), b, 0o600))

	startNode(t, dir, "none")
	require.Eventually(t, func() bool { return len(replicaProcesses(id)) == 0 }, 10*time.Second, 50*time.Millisecond,
		"a process the agent started that belongs to no replica must be stopped")
}

func TestAgent_ExitedServerIsFailedWithExitCodeAndLogTail(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, "h200")
	url, sum := shellPackage(t, "echo loading; echo 'CUDA out of memory' >&2; exit 7")
	id := newID()
	n.mustStart(startReq(id, url, sum, 1))
	r := n.waitState(id, modelplane.ReplicaFailed)
	require.NotNil(t, r.ExitCode)
	require.Equal(t, 7, *r.ExitCode)
	require.Contains(t, r.LogTail, "CUDA out of memory")
	require.Contains(t, r.Error, "code 7")
	require.Empty(t, n.inventory().GPUs[0].AssignedReplicaID, "a failed replica frees its GPU")
}

func TestAgent_BadRequests(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, "h200")
	url, sum := testmodelPackage(t)
	// A start may carry a patch's files: up to 64 MiB.
	big := bytes.Repeat([]byte("x"), 64<<20+1)
	tests := []struct {
		name     string
		body     any
		tok      string
		want     int
		wantText string
	}{
		{"wrong token", startReq(newID(), url, sum, 0), "nope", http.StatusUnauthorized, "token"},
		{"no token", startReq(newID(), url, sum, 0), "", http.StatusUnauthorized, "token"},
		{"malformed JSON", []byte(`{"replica_id": `), token, http.StatusBadRequest, "invalid JSON"},
		{"unknown field", []byte(`{"replica_id": "a", "bogus": 1}`), token, http.StatusBadRequest, "bogus"},
		{"missing replica_id", startReq("", url, sum, 0), token, http.StatusBadRequest, "replica_id"},
		{"bad deployment_id", func() agentproto.StartRequest { r := startReq(newID(), url, sum, 0); r.DeploymentID = "Dep!"; return r }(), token, http.StatusBadRequest, "deployment_id"},
		{"no archive or image", agentproto.StartRequest{ReplicaID: newID(), DeploymentID: "d1"}, token, http.StatusBadRequest, "archive_url"},
		{"bad digest", startReq(newID(), url, "abc", 0), token, http.StatusBadRequest, "archive_sha256"},
		{"bad scheme", startReq(newID(), "ftp://x/y", sum, 0), token, http.StatusBadRequest, "archive_url"},
		{"too many GPUs", startReq(newID(), url, sum, 17), token, http.StatusBadRequest, "resources.gpu_count"},
		{"bad env name", func() agentproto.StartRequest {
			r := startReq(newID(), url, sum, 0)
			r.Env = map[string]string{"1X": "v"}
			return r
		}(), token, http.StatusBadRequest, "env"},
		{"image without docker", func() agentproto.StartRequest { r := startReq(newID(), "", "", 0); r.Image = "repo/x:1"; return r }(), token, http.StatusBadRequest, "containers"},
		{"oversized body", big, token, http.StatusRequestEntityTooLarge, "bytes"},
		{"GPUs not there", startReq(newID(), url, sum, 4), token, http.StatusConflict, "GPU"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body := n.call(http.MethodPost, "/v1/replicas", tt.body, tt.tok)
			require.Equal(t, tt.want, code, string(body))
			require.Contains(t, string(body), tt.wantText)
			require.Contains(t, string(body), `"error"`)
		})
	}
	code, body := n.call(http.MethodPost, "/v1/replicas/nosuch/patch", big, token)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, "a patch over 64 MiB: %s", body)
	require.Contains(t, string(body), "67108864 bytes")
	code, body = n.call(http.MethodGet, "/v1/replicas/nosuch", bytes.Repeat([]byte("x"), 2<<20), token)
	require.Equal(t, http.StatusRequestEntityTooLarge, code, "other requests stay within 1 MiB: %s", body)
	code, _ = n.call(http.MethodGet, "/v1/replicas/nosuch", nil, token)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = n.call(http.MethodDelete, "/v1/replicas/nosuch", nil, token)
	require.Equal(t, http.StatusNotFound, code)
	code, _ = n.call(http.MethodGet, "/v1/inventory", nil, "")
	require.Equal(t, http.StatusUnauthorized, code)
}

// tarGz builds an archive from raw entries, for packages no honest packer would make.
func tarGz(t *testing.T, entries []*tar.Header, bodies []string) (string, string) {
	t.Helper()
	var buf bytes.Buffer
	gz := gzip.NewWriter(&buf)
	tw := tar.NewWriter(gz)
	for i, h := range entries {
		h.Size = int64(len(bodies[i]))
		if h.Typeflag == tar.TypeSymlink {
			h.Size = 0
		}
		require.NoError(t, tw.WriteHeader(h))
		if h.Typeflag != tar.TypeSymlink {
			_, err := tw.Write([]byte(bodies[i]))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	require.NoError(t, gz.Close())
	p := filepath.Join(t.TempDir(), "bad.tar.gz")
	require.NoError(t, os.WriteFile(p, buf.Bytes(), 0o644))
	sum := sha256.Sum256(buf.Bytes())
	return "file://" + p, hex.EncodeToString(sum[:])
}

func TestAgent_BadArchivesFailTheReplicaAndWriteNothingOutside(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, "h200")
	config := "model_name: x\ncommand: [\"/bin/true\"]\n"
	good, goodSum := testmodelPackage(t)
	escape := filepath.Join(filepath.Dir(dir), "escaped-"+modelplane.NewID(6))
	slipURL, slipSum := tarGz(t, []*tar.Header{
		{Name: "config.yaml", Mode: 0o644, Typeflag: tar.TypeReg},
		{Name: "../../../" + filepath.Base(escape), Mode: 0o644, Typeflag: tar.TypeReg},
	}, []string{config, "pwned"})
	linkURL, linkSum := tarGz(t, []*tar.Header{
		{Name: "config.yaml", Mode: 0o644, Typeflag: tar.TypeReg},
		{Name: "out", Typeflag: tar.TypeSymlink, Linkname: "../../../../"},
	}, []string{config, ""})
	noConfigURL, noConfigSum := tarGz(t, []*tar.Header{{Name: "model.py", Mode: 0o644, Typeflag: tar.TypeReg}}, []string{"x"})
	tests := []struct {
		name, url, sum, want string
	}{
		{"bad checksum", good, strings.Repeat("0", 64), "checksum"},
		{"zip slip", slipURL, slipSum, "unsafe"},
		{"symlink out", linkURL, linkSum, "unsafe"},
		{"no config.yaml", noConfigURL, noConfigSum, "config.yaml"},
		{"archive missing", "file:///nonexistent/pkg.tar.gz", goodSum, "fetching the archive"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := newID()
			code, body := n.call(http.MethodPost, "/v1/replicas", startReq(id, tt.url, tt.sum, 1), token)
			require.Equal(t, http.StatusCreated, code, string(body))
			r := n.waitState(id, modelplane.ReplicaFailed)
			require.Contains(t, strings.ToLower(r.Error), tt.want)
			require.Empty(t, n.inventory().GPUs[0].AssignedReplicaID, "the failed replica's GPU is free again")
		})
	}
	_, err := os.Stat(escape)
	require.ErrorIs(t, err, os.ErrNotExist, "a zip-slip entry was written outside the replica directory")
}

func TestAgent_UnhealthyGPUGetsNoReplicaAndItsReplicaIsReported(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200")
	url, sum := testmodelPackage(t)
	id := newID()
	n.mustStart(startReq(id, url, sum, 1))
	n.waitState(id, modelplane.ReplicaReady)
	gpu := n.inventory().GPUs[0].UUID

	sim := n.gpus.Simulator()
	require.Eventually(t, func() bool { return sim.InjectXID(gpu, 79) == nil }, 5*time.Second, 20*time.Millisecond)
	require.Eventually(t, func() bool { return !n.inventory().GPUs[0].Healthy }, 5*time.Second, 20*time.Millisecond)
	require.Contains(t, n.inventory().GPUs[0].UnhealthyReason, "79")
	require.True(t, n.replica(id).GPUUnhealthy, "the replica on the sick GPU must be reported")

	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
	code, body := n.call(http.MethodPost, "/v1/replicas", startReq(newID(), url, sum, 1), token)
	require.Equal(t, http.StatusConflict, code, "an unhealthy GPU gets no new replica")
	require.Contains(t, string(body), "unhealthy")
}

// TestAgent_DownloadsArchiveFromTheAPISayingWhichNodeAsks starts a replica whose archive is
// served by the control plane: the agent must send the node token with its node's name and
// agent ID, which the control plane needs to serve a node only its own replicas' archives.
func TestAgent_DownloadsArchiveFromTheAPISayingWhichNodeAsks(t *testing.T) {
	fileURL, sum := testmodelPackage(t)
	body, err := os.ReadFile(strings.TrimPrefix(fileURL, "file://"))
	require.NoError(t, err)
	var mu sync.Mutex
	var agentID string
	var asked []string
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == agentproto.HeartbeatPath {
			w.WriteHeader(http.StatusOK)
			return
		}
		mu.Lock()
		want := agentID
		asked = append(asked, r.Header.Get(agentproto.NodeNameHeader)+"/"+r.Header.Get(agentproto.AgentIDHeader))
		mu.Unlock()
		if r.URL.Path != "/internal/v1/archives/sha256:"+sum || r.Header.Get("Authorization") != "Bearer "+token ||
			r.Header.Get(agentproto.NodeNameHeader) != "node-test" || want == "" || r.Header.Get(agentproto.AgentIDHeader) != want {
			http.Error(w, "not found", http.StatusNotFound)
			return
		}
		_, _ = w.Write(body)
	}))
	defer api.Close()
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200", func(c *agent.Config) { c.APIURL = api.URL })
	mu.Lock()
	agentID = n.a.ID()
	mu.Unlock()
	id := newID()
	n.mustStart(startReq(id, api.URL+"/internal/v1/archives/sha256:"+sum, sum, 0))
	r := n.waitState(id, modelplane.ReplicaReady)
	require.Empty(t, r.Error)
	mu.Lock()
	defer mu.Unlock()
	require.Contains(t, asked, "node-test/"+agentID, "the download names the node and its agent ID")
}

// TestAgent_ArchiveURLOfAnotherAPIHostIsFetchedFromItsOwnAPI: with several API processes
// the worker may name an API host other than the one this agent reports to. Every API serves
// every archive, so the agent fetches the archive from its own API, and the other host sees
// neither a request nor the node token.
func TestAgent_ArchiveURLOfAnotherAPIHostIsFetchedFromItsOwnAPI(t *testing.T) {
	fileURL, sum := testmodelPackage(t)
	body, err := os.ReadFile(strings.TrimPrefix(fileURL, "file://"))
	require.NoError(t, err)
	var served, elsewhere atomic.Int32
	own := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/internal/v1/archives/sha256:"+sum && r.Header.Get("Authorization") == "Bearer "+token {
			served.Add(1)
			_, _ = w.Write(body)
			return
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer own.Close()
	other := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		elsewhere.Add(1)
		http.Error(w, "not this host", http.StatusUnauthorized)
	}))
	defer other.Close()
	dir := t.TempDir()
	defer stopAll(t, dir)
	n := startNode(t, dir, "h200", func(c *agent.Config) { c.APIURL = own.URL })
	id := newID()
	n.mustStart(startReq(id, other.URL+"/internal/v1/archives/sha256:"+sum, sum, 0))
	r := n.waitState(id, modelplane.ReplicaReady)
	require.Empty(t, r.Error)
	require.EqualValues(t, 1, served.Load(), "the archive came from the agent's own API")
	require.Zero(t, elsewhere.Load(), "the other API host was never asked")
}

func TestAgent_HeartbeatsInventoryAndReplicas(t *testing.T) {
	var mu sync.Mutex
	var got []agentproto.Heartbeat
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != agentproto.HeartbeatPath || r.Header.Get("Authorization") != "Bearer "+token {
			http.Error(w, "bad", http.StatusUnauthorized)
			return
		}
		var hb agentproto.Heartbeat
		if err := json.NewDecoder(r.Body).Decode(&hb); err == nil {
			mu.Lock()
			got = append(got, hb)
			mu.Unlock()
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer api.Close()
	dir := t.TempDir()
	n := startNode(t, dir, "dgxa100", func(c *agent.Config) { c.APIURL = api.URL; c.AdvertiseURL = "http://agent.example:7070" })
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= 2
	}, 5*time.Second, 20*time.Millisecond)
	mu.Lock()
	hb := got[len(got)-1]
	mu.Unlock()
	require.Equal(t, "node-test", hb.Name)
	require.Equal(t, n.a.ID(), hb.AgentID)
	require.Equal(t, "http://agent.example:7070", hb.AgentURL)
	require.Len(t, hb.Inventory.GPUs, 8)
	require.Equal(t, "dgxa100", hb.Inventory.GPUProfile)
}

// handleOf reads a replica's runtime handle from the state file.
func handleOf(t *testing.T, dir, id string, pid int) runtime.Handle {
	t.Helper()
	replicas, err := storedReplicas(dir)
	require.NoError(t, err)
	for _, r := range replicas {
		if r.ID == id && r.Handle != nil {
			require.Equal(t, pid, r.Handle.PID, "state file and process table disagree")
			return *r.Handle
		}
	}
	t.Fatalf("replica %s has no handle in the state file", id)
	return runtime.Handle{}
}

// pidOf is the process ID of a replica's model server, from the state file.
func pidOf(t *testing.T, dir, id string) int {
	t.Helper()
	replicas, err := storedReplicas(dir)
	require.NoError(t, err)
	for _, r := range replicas {
		if r.ID == id && r.Handle != nil {
			return r.Handle.PID
		}
	}
	t.Fatalf("replica %s has no handle in the state file", id)
	return 0
}

func TestAgent_ModelThatFailsToLoadIsFailedWithItsError(t *testing.T) {
	dir := t.TempDir()
	n := startNode(t, dir, "h200")
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "model"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "config.yaml"), []byte("model_name: broken\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(src, "model", "model.py"), []byte(
		"class Model:\n    def __init__(self, **kw):\n        pass\n    def load(self):\n        raise RuntimeError('weights not found')\n    def predict(self, x):\n        return x\n"), 0o644))
	url, sum := pkg(t, src)
	id := newID()
	n.mustStart(startReq(id, url, sum, 1))
	r := n.waitState(id, modelplane.ReplicaFailed)
	require.Contains(t, r.Error, "weights not found")
	require.Empty(t, replicaProcesses(id), "the server of a model that cannot load is stopped")
	require.Empty(t, n.inventory().GPUs[0].AssignedReplicaID)
}

func TestAgent_RelativeStateDirStillRunsPythonModels(t *testing.T) {
	url, sum := pkg(t, "../examples/models/echo")
	t.Chdir(t.TempDir())
	defer stopAll(t, filepath.Join(".", "state"))
	n := startNode(t, "state", "none")
	id := newID()
	n.mustStart(startReq(id, url, sum, 0))
	r := n.waitState(id, modelplane.ReplicaReady)
	status, out := predict(t, r.Address, r.PredictPath, `{"x": 1}`)
	require.Equal(t, http.StatusOK, status, "%v", out)
	_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
}

// An agent whose API is https:// with a private authority heartbeats when it trusts that
// authority (APITLS), and not otherwise.
func TestAgent_HeartbeatsOverTLSTrustingAPITLS(t *testing.T) {
	var beats atomic.Int32
	api := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == agentproto.HeartbeatPath {
			beats.Add(1)
		}
		w.WriteHeader(http.StatusOK)
	}))
	defer api.Close()
	pool := x509.NewCertPool()
	pool.AddCert(api.Certificate())

	startNode(t, t.TempDir(), "none", func(c *agent.Config) { c.APIURL = api.URL })
	time.Sleep(300 * time.Millisecond)
	require.Zero(t, beats.Load(), "an agent that does not trust the API's certificate must not get through")

	startNode(t, t.TempDir(), "none", func(c *agent.Config) {
		c.APIURL = api.URL
		c.APITLS = &tls.Config{RootCAs: pool}
	})
	require.Eventually(t, func() bool { return beats.Load() >= 1 }, 5*time.Second, 20*time.Millisecond)
}

func TestAgent_PrewarmedReplica(t *testing.T) {
	dir := t.TempDir()
	defer stopAll(t, dir)
	prewarm := func(c *agent.Config) { c.PythonPrewarm = true }
	n := startNode(t, dir, "none", prewarm)
	url, sum := pkg(t, "../examples/models/echo")

	// The first replica may start cold, while its environment's fork server starts; one of
	// the next is forked from it.
	var id string
	var forked runtime.Handle
	deadline := time.Now().Add(30 * time.Second)
	for !forked.Forked {
		require.True(t, time.Now().Before(deadline), "no replica was started by the fork server")
		if id != "" {
			_, _ = n.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
		}
		id = newID()
		n.mustStart(startReq(id, url, sum, 0))
		r := n.waitState(id, modelplane.ReplicaReady)
		forked = handleOf(t, dir, id, pidOf(t, dir, id))
		status, out := predict(t, r.Address, r.PredictPath, `{"text": "hi"}`)
		require.Equal(t, http.StatusOK, status, "%v", out)
		require.Equal(t, "production", out["environment"])
	}
	pids := replicaProcesses(id)
	require.Len(t, pids, 1, "the forked replica shows its own ID in /proc/PID/environ")

	n.shutdown()
	n2 := startNode(t, dir, "none", prewarm)
	after := n2.waitState(id, modelplane.ReplicaReady)
	require.Equal(t, pids, replicaProcesses(id), "the forked replica is adopted, not started again")
	status, _ := predict(t, after.Address, after.PredictPath, `{"text": "hi"}`)
	require.Equal(t, http.StatusOK, status)
	code, _ := n2.call(http.MethodDelete, "/v1/replicas/"+id, nil, token)
	require.Equal(t, http.StatusOK, code)
	require.Empty(t, replicaProcesses(id))
}
