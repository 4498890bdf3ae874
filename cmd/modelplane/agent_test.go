package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	mp "github.com/modelplane/modelplane" // "modelplane" names main_test.go's command runner
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/modelpkg"
)

// startDev runs `modelplane dev` and returns its API URL and data directory.
func startDev(t *testing.T) (string, string) {
	t.Helper()
	dir := t.TempDir()
	cmd := modelplaneCmd("dev", "--data-dir", dir, "--listen", freeAddr(t),
		"--temporal-port", "0", "--temporal-ui-port", "0", "--database-url", devDatabase(t))
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(strings.TrimSpace(sc.Text()), "API:"); ok {
			go func() { _, _ = io.Copy(io.Discard, stdout) }()
			return strings.TrimSpace(v), dir
		}
	}
	t.Fatal("dev exited before printing its API address")
	return "", ""
}

// agentProc is an agent process and, once it ended, its exit code.
type agentProc struct {
	cmd    *exec.Cmd
	exited chan struct{}
	code   int
}

// wait waits for the agent to end and returns its exit code.
func (p *agentProc) wait(t *testing.T) int {
	t.Helper()
	select {
	case <-p.exited:
		return p.code
	case <-time.After(15 * time.Second):
		t.Fatal("the agent did not exit within 15s")
		return -1
	}
}

// startAgent runs `modelplane agent` as its own process, as on a GPU host.
func startAgent(t *testing.T, listen, apiURL, tokenFile, stateDir string) *agentProc {
	t.Helper()
	cmd := modelplaneCmd("agent", "--listen", listen, "--api-url", apiURL, "--token-file", tokenFile,
		"--state-dir", stateDir, "--gpu-profile", "h200", "--name", "gpu-host-1")
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	p := &agentProc{cmd: cmd, exited: make(chan struct{})}
	go func() {
		st, err := cmd.Process.Wait()
		p.code = -1
		if err == nil {
			p.code = st.ExitCode()
		}
		close(p.exited)
	}()
	t.Cleanup(func() {
		// A test that failed half-way must not leave the agent running.
		_ = cmd.Process.Kill()
		<-p.exited
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + listen + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil && resp.StatusCode == http.StatusOK
	}, 20*time.Second, 50*time.Millisecond, "agent did not come up")
	return p
}

func call(t *testing.T, method, url, auth string, body any) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		require.NoError(t, err)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, url, rd)
	require.NoError(t, err)
	req.Header.Set("Authorization", auth)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, out
}

type nodeV1 struct {
	Name  string `json:"name"`
	State string `json:"state"`
	GPUs  []struct {
		UUID              string  `json:"uuid"`
		Name              string  `json:"name"`
		Healthy           bool    `json:"healthy"`
		AssignedReplicaID *string `json:"assigned_replica_id"`
	} `json:"gpus"`
}

type nodesResponse struct {
	Nodes []nodeV1 `json:"nodes"`
}

func TestAgent_EchoModelSurvivesAgentKill9AndDeleteFreesGPU(t *testing.T) {
	apiURL, dataDir := startDev(t)
	key, err := os.ReadFile(filepath.Join(dataDir, "api-key"))
	require.NoError(t, err)
	admin := "Api-Key " + strings.TrimSpace(string(key))
	tokenFile := filepath.Join(dataDir, "node-token")
	tokenBytes, err := os.ReadFile(tokenFile)
	require.NoError(t, err)
	nodeAuth := "Bearer " + strings.TrimSpace(string(tokenBytes))

	listen, stateDir := freeAddr(t), t.TempDir()
	agentURL := "http://" + listen
	agentCmd := startAgent(t, listen, apiURL, tokenFile, stateDir)

	// The API lists the node and its H200 once the agent has reported.
	// node returns the host's entry in /v1/nodes (dev's own agent is listed too).
	node := func() (nodeV1, bool) {
		code, body := call(t, http.MethodGet, apiURL+"/v1/nodes", admin, nil)
		var nodes nodesResponse
		if code != http.StatusOK || json.Unmarshal(body, &nodes) != nil {
			return nodeV1{}, false
		}
		for _, n := range nodes.Nodes {
			if n.Name == "gpu-host-1" {
				return n, true
			}
		}
		return nodeV1{}, false
	}
	var host nodeV1
	require.Eventually(t, func() bool {
		var ok bool
		host, ok = node()
		return ok
	}, 20*time.Second, 100*time.Millisecond, "the agent never showed up in /v1/nodes")
	require.Equal(t, "READY", host.State)
	require.Len(t, host.GPUs, 1)
	require.Equal(t, "NVIDIA H200", host.GPUs[0].Name)
	require.True(t, host.GPUs[0].Healthy)
	gpu := host.GPUs[0].UUID

	// Start the python echo model on the GPU through the agent API.
	archive := filepath.Join(t.TempDir(), "echo.tar.gz")
	f, err := os.Create(archive)
	require.NoError(t, err)
	sum, err := modelpkg.Pack("../../examples/models/echo", f)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	req := agentproto.StartRequest{ReplicaID: "echo-1", DeploymentID: "dep00001", Environment: "production",
		ArchiveURL: "file://" + archive, ArchiveSHA256: sum, Resources: mp.GPURequest{GPUCount: 1}}
	code, body := call(t, http.MethodPost, agentURL+"/v1/replicas", nodeAuth, req)
	require.Equal(t, http.StatusCreated, code, string(body))
	var rep agentproto.Replica
	require.Eventually(t, func() bool {
		_, body := call(t, http.MethodGet, agentURL+"/v1/replicas/echo-1", nodeAuth, nil)
		return json.Unmarshal(body, &rep) == nil && rep.State == mp.ReplicaReady
	}, 30*time.Second, 100*time.Millisecond, "the echo replica never became ready: %+v", rep)
	echo := func() map[string]any {
		resp, err := http.Post("http://"+rep.Address+rep.PredictPath, "application/json", strings.NewReader(`{"text":"hi"}`))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		var out map[string]any
		require.NoError(t, json.NewDecoder(resp.Body).Decode(&out))
		return out
	}
	require.Equal(t, map[string]any{"text": "hi"}, echo()["echo"])

	// kill -9 the agent, restart it: the same replica is still serving and listed.
	require.NoError(t, agentCmd.cmd.Process.Signal(syscall.SIGKILL))
	agentCmd.wait(t)
	require.Equal(t, map[string]any{"text": "hi"}, echo()["echo"], "the model must keep serving while its agent is dead")
	agentCmd = startAgent(t, listen, apiURL, tokenFile, stateDir)
	var again agentproto.Replica
	require.Eventually(t, func() bool {
		_, body := call(t, http.MethodGet, agentURL+"/v1/replicas/echo-1", nodeAuth, nil)
		return json.Unmarshal(body, &again) == nil && again.State == mp.ReplicaReady
	}, 20*time.Second, 100*time.Millisecond)
	require.Equal(t, rep.Address, again.Address)
	require.Equal(t, []string{gpu}, again.GPUUUIDs)
	require.Equal(t, map[string]any{"text": "hi"}, echo()["echo"])

	// DELETE stops it and frees its GPU, in the agent and in the API's view.
	code, body = call(t, http.MethodDelete, agentURL+"/v1/replicas/echo-1", nodeAuth, nil)
	require.Equal(t, http.StatusOK, code, string(body))
	_, err = http.Post("http://"+rep.Address+rep.PredictPath, "application/json", strings.NewReader(`{}`))
	require.Error(t, err, "the model server must be gone after DELETE")
	require.Eventually(t, func() bool {
		host, ok := node()
		return ok && host.GPUs[0].AssignedReplicaID == nil
	}, 20*time.Second, 100*time.Millisecond, "the API must see the GPU free again")

	require.NoError(t, agentCmd.cmd.Process.Signal(syscall.SIGTERM))
	require.Equal(t, 0, agentCmd.wait(t), "the agent exits 0 on SIGTERM")
}

// TestAgent_BadReplicaHostFailsAtStart: a --replica-host that is not an address of this host
// without a port stops the agent at once, with a message naming the flag.
func TestAgent_BadReplicaHostFailsAtStart(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("node-token-0123456789abcdef"), 0o600))
	cases := map[string]struct{ flag, env, why string }{
		"with a port":             {flag: "10.0.0.1:80", why: "has a port"},
		"not a name":              {flag: "not an ip!", why: "neither an IP address nor a host name"},
		"not this host's":         {flag: "203.0.113.7", why: "203.0.113.7 is not an address of this host"},
		"from the environment":    {env: "203.0.113.7", why: "203.0.113.7 is not an address of this host"},
		"every address":           {flag: "0.0.0.0", why: "every address"},
		"IPv6 address with port":  {flag: "[::1]:8080", why: "has a port"},
		"host name with a port":   {flag: "localhost:8080", why: "has a port"},
		"IPv6 in brackets, alone": {flag: "[::1]", why: "without brackets"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			args := []string{"agent", "--listen", freeAddr(t), "--token-file", tokenFile,
				"--state-dir", t.TempDir(), "--gpu-profile", "none"}
			if c.flag != "" {
				args = append(args, "--replica-host", c.flag)
			}
			cmd := modelplaneCmd(args...)
			if c.env != "" {
				cmd.Env = append(cmd.Env, "MODELPLANE_AGENT_REPLICA_HOST="+c.env)
			}
			done := make(chan struct{})
			var out []byte
			var err error
			go func() { out, err = cmd.CombinedOutput(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				t.Fatal("the agent did not exit within 20s")
			}
			var exit *exec.ExitError
			require.ErrorAs(t, err, &exit, "the agent must fail: %s", out)
			require.Contains(t, string(out), "--replica-host")
			require.Contains(t, string(out), c.why)
		})
	}
}

// TestAgent_ReplicaHostOfThisHostIsAccepted: an agent given a loopback address other than
// 127.0.0.1 as its replica host starts and says so.
func TestAgent_ReplicaHostOfThisHostIsAccepted(t *testing.T) {
	tokenFile := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(tokenFile, []byte("node-token-0123456789abcdef"), 0o600))
	listen := freeAddr(t)
	cmd := modelplaneCmd("agent", "--listen", listen, "--token-file", tokenFile,
		"--state-dir", t.TempDir(), "--gpu-profile", "none")
	cmd.Env = append(cmd.Env, "MODELPLANE_AGENT_REPLICA_HOST=127.0.0.2")
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		_ = cmd.Wait()
	})
	waitHealthy(t, "http://"+listen+"/healthz")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	_ = cmd.Wait()
	require.Contains(t, out.String(), "replica_host=127.0.0.2")
}
