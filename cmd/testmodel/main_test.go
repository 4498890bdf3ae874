package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/modelplane/modelplane/internal/proctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMain lets a test start this binary as the real command: the test binary re-executes
// itself with TESTMODEL_RUN_MAIN set, so signals reach a separate process.
func TestMain(m *testing.M) {
	if os.Getenv("TESTMODEL_RUN_MAIN") == "1" {
		main()
		return
	}
	os.Exit(m.Run())
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

func TestCommand_SIGTERMDrainsInFlightRequestAndExits0(t *testing.T) {
	port := freePort(t)
	cmd := exec.Command(os.Args[0], "--latency", "600ms", "--response-bytes", "3")
	// The port comes from $PORT, as the agent passes it.
	cmd.Env = append(os.Environ(), "TESTMODEL_RUN_MAIN=1", fmt.Sprintf("PORT=%d", port))
	var stdout, stderr proctest.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
	})
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/health")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 5*time.Second, 20*time.Millisecond, "testmodel never became healthy")

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Post(url+"/predict", "application/json", strings.NewReader(`{"q": 1}`))
		if err != nil {
			got <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		got <- result{status: resp.StatusCode, body: string(b)}
	}()
	require.Eventually(t, func() bool {
		resp, err := http.Get(url + "/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(b), `"in_flight":1`)
	}, 5*time.Second, 10*time.Millisecond, "predict never arrived")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))

	r := <-got
	require.NoError(t, r.err, "in-flight request cut off by SIGTERM")
	assert.Equal(t, 200, r.status)
	assert.Contains(t, r.body, `"output":{"q":1}`)
	assert.Contains(t, r.body, `"pad":"xxx"`)
	select {
	case err := <-exited:
		assert.NoError(t, err, "exit status after SIGTERM")
	// http.Server.Shutdown counts a connection that never sent a request (one the client's
	// transport dialled and then left unused) as idle only after 5 s, so the exit may take
	// that long.
	case <-time.After(10 * time.Second):
		t.Fatal("testmodel did not exit after SIGTERM")
	}
	assert.Contains(t, stdout.String(), "path=/predict", "request log on stdout")
}

func TestRun_RejectsBadFlags(t *testing.T) {
	tests := []struct {
		name string
		args []string
	}{
		{"unknown flag", []string{"--nope"}},
		{"failure rate above 1", []string{"--failure-rate", "2"}},
		{"negative latency", []string{"--latency", "-1s"}},
		{"extra argument", []string{"serve"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var stderr bytes.Buffer
			code := run(tt.args, func(string) string { return "" }, io.Discard, &stderr)
			assert.Equal(t, 2, code, "stderr: %s", stderr.String())
		})
	}
}

func TestDefaultPort_ComesFromPORTElse8080(t *testing.T) {
	assert.Equal(t, 9123, defaultPort(func(string) string { return "9123" }))
	assert.Equal(t, 8080, defaultPort(func(string) string { return "" }))
}

func TestDefaultHost_ComesFromMODELPLANE_BINDElseLoopback(t *testing.T) {
	env := map[string]string{"MODELPLANE_BIND": "10.1.2.3"}
	assert.Equal(t, "10.1.2.3", defaultHost(func(k string) string { return env[k] }))
	assert.Equal(t, "127.0.0.1", defaultHost(func(string) string { return "" }))
}

func TestCommand_QuietWritesNoLinePerRequest(t *testing.T) {
	port := freePort(t)
	cmd := exec.Command(os.Args[0], "--quiet", "--port", strconv.Itoa(port))
	cmd.Env = append(os.Environ(), "TESTMODEL_RUN_MAIN=1")
	var stdout, stderr proctest.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	url := fmt.Sprintf("http://127.0.0.1:%d", port)
	require.Eventually(t, func() bool {
		resp, err := http.Post(url+"/predict", "application/json", strings.NewReader(`{"q": 1}`))
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == 200
	}, 5*time.Second, 20*time.Millisecond, "testmodel never answered a prediction")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait())
	assert.Empty(t, stdout.String(), "no request log")
	assert.Contains(t, stderr.String(), "test model stopped")
}
