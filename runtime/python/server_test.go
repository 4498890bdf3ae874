package python_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modelplane/modelplane/internal/proctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/runtime/python"
)

// server is a running server.py.
type server struct {
	t      *testing.T
	cmd    *exec.Cmd
	url    string
	stdout *proctest.Buffer
	stderr *proctest.Buffer
	exited chan struct{}
	err    error // the exit error, once exited is closed
}

// writePackage makes a python-runtime package with the given config.yaml and model.py.
func writePackage(t *testing.T, config, modelPy string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte(config), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "model"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "data"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model", "model.py"), []byte(modelPy), 0o644))
	return dir
}

func freePort(t *testing.T) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// startServer runs server.py for pkgDir the way the agent would, and waits for liveness.
func startServer(t *testing.T, pkgDir string, secrets map[string]string, extraEnv ...string) *server {
	t.Helper()
	interp, err := exec.LookPath(python.Interpreter())
	require.NoError(t, err, "these tests need %s on PATH", python.Interpreter())

	cfg, err := modelpkg.ReadConfig(pkgDir)
	require.NoError(t, err)
	vars, err := python.Env(cfg, secrets)
	require.NoError(t, err)
	serverPath, err := python.WriteServer(t.TempDir())
	require.NoError(t, err)

	port := freePort(t)
	argv := python.Command(serverPath, pkgDir)
	cmd := exec.Command(interp, argv[1:]...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("PORT=%d", port))
	for k, v := range vars {
		cmd.Env = append(cmd.Env, k+"="+v)
	}
	cmd.Env = append(cmd.Env, extraEnv...)
	s := &server{t: t, cmd: cmd, url: fmt.Sprintf("http://127.0.0.1:%d", port),
		stdout: &proctest.Buffer{}, stderr: &proctest.Buffer{}, exited: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = s.stdout, s.stderr
	require.NoError(t, cmd.Start())
	go func() {
		s.err = cmd.Wait()
		close(s.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-s.exited:
		default:
			_ = cmd.Process.Kill()
			<-s.exited
		}
		if t.Failed() {
			t.Logf("server stdout:\n%s\nserver stderr:\n%s", s.stdout, s.stderr)
		}
	})
	s.waitFor(t, "/healthz", 200, 10*time.Second)
	return s
}

// get returns the status and decoded JSON body of GET path.
func (s *server) get(t *testing.T, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get(s.url + path)
	require.NoError(t, err)
	return decode(t, resp)
}

func (s *server) predict(t *testing.T, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post(s.url+"/v1/models/model:predict", "application/json", strings.NewReader(body))
	require.NoError(t, err)
	return decode(t, resp)
}

func decode(t *testing.T, resp *http.Response) (int, map[string]any) {
	t.Helper()
	defer resp.Body.Close()
	raw, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	var body map[string]any
	require.NoError(t, json.Unmarshal(raw, &body), "response is not a JSON object: %q", raw)
	return resp.StatusCode, body
}

// waitFor polls GET path until it answers want.
func (s *server) waitFor(t *testing.T, path string, want int, timeout time.Duration) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	last := "no answer"
	for time.Now().Before(deadline) {
		select {
		case <-s.exited:
			require.FailNow(t, "server exited", "waiting for %s to answer %d: %v", path, want, s.err)
		default:
		}
		resp, err := http.Get(s.url + path)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == want {
				return
			}
			last = resp.Status
		} else {
			last = err.Error()
		}
		time.Sleep(20 * time.Millisecond)
	}
	require.FailNow(t, "timeout", "GET %s did not answer %d within %s; last: %s", path, want, timeout, last)
}

const plainConfig = "model_name: tester\n"

func TestServer_ReadinessIs503UntilLoadReturnsThen200(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, `
import os, time

class Model:
    def __init__(self, data_dir, **kwargs):
        self.gate = os.path.join(data_dir, "gate")

    def load(self):
        while not os.path.exists(self.gate):
            time.sleep(0.01)

    def predict(self, model_input):
        return model_input
`)
	s := startServer(t, pkg, nil)

	status, body := s.get(t, "/v1/models/model")
	assert.Equal(t, 503, status, "not ready while load() runs: %v", body)
	assert.Equal(t, false, body["ready"])
	status, body = s.predict(t, `{"a": 1}`)
	assert.Equal(t, 503, status, "predict before ready: %v", body)

	require.NoError(t, os.WriteFile(filepath.Join(pkg, "data", "gate"), nil, 0o644))
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	status, body = s.get(t, "/v1/models/model")
	assert.Equal(t, 200, status)
	assert.Equal(t, map[string]any{"model_name": "tester", "ready": true}, body)
}

func TestServer_PredictGetsInputAndConstructorArguments(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, "model_name: tester\nsecrets: [hf_token]\nmodel_metadata: {k: v}\nenvironment_variables: {GREETING: hi}\n", `
import os

class Model:
    def __init__(self, config, data_dir, secrets, environment):
        self.info = {
            "model_name": config["model_name"],
            "metadata": config["model_metadata"],
            "data_dir": str(data_dir),
            "secrets": secrets,
            "environment": environment,
        }

    def load(self):
        self.info["greeting"] = os.environ["GREETING"]

    def predict(self, model_input):
        return {"input": model_input, **self.info}
`)
	s := startServer(t, pkg, map[string]string{"hf_token": "s3cret", "unlisted": "never"}, "MODELPLANE_ENVIRONMENT=staging")
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

	status, body := s.predict(t, `{"prompt": "hello", "n": [1, 2]}`)
	require.Equal(t, 200, status, "%v", body)
	assert.Equal(t, map[string]any{"prompt": "hello", "n": []any{1.0, 2.0}}, body["input"])
	assert.Equal(t, "tester", body["model_name"])
	assert.Equal(t, map[string]any{"k": "v"}, body["metadata"])
	assert.Equal(t, filepath.Join(pkg, "data"), body["data_dir"])
	assert.Equal(t, map[string]any{"hf_token": "s3cret"}, body["secrets"], "only the secrets the config names")
	assert.Equal(t, map[string]any{"name": "staging"}, body["environment"])
	assert.Equal(t, "hi", body["greeting"])
}

func TestServer_PassesOnlyTheArgumentsTheConstructorTakes(t *testing.T) {
	t.Parallel()
	models := map[string]string{
		"no __init__": `
class Model:
    def predict(self, model_input):
        return {"ok": True}
`,
		"config only, no load": `
class Model:
    def __init__(self, config):
        self.name = config["model_name"]
    def predict(self, model_input):
        return {"ok": self.name == "tester"}
`,
		"keyword-only environment": `
class Model:
    def __init__(self, *, environment=None):
        self.env = environment
    def predict(self, model_input):
        return {"ok": self.env == {"name": None}}
`,
		"async load and predict": `
import asyncio
class Model:
    async def load(self):
        await asyncio.sleep(0.01)
        self.ready = True
    async def predict(self, model_input):
        await asyncio.sleep(0.01)
        return {"ok": self.ready}
`,
		"preprocess and postprocess": `
class Model:
    def preprocess(self, x):
        return x + 1
    def predict(self, x):
        return x * 2
    def postprocess(self, x):
        return {"ok": x == 8}
`,
	}
	for name, src := range models {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, writePackage(t, plainConfig, src), nil)
			s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
			status, body := s.predict(t, `3`)
			require.Equal(t, 200, status, "%v", body)
			assert.Equal(t, true, body["ok"])
		})
	}
}

const sleepyModel = `
import os, time

class Model:
    def __init__(self, data_dir, **kwargs):
        self.data_dir = data_dir

    def predict(self, model_input):
        open(os.path.join(self.data_dir, "started"), "w").close()
        time.sleep(model_input["sleep"])
        return {"slept": model_input["sleep"]}
`

func TestServer_ServesRequestsConcurrently(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, sleepyModel)
	s := startServer(t, pkg, nil, configEnv(t, pkg, map[string]any{"runtime": map[string]any{"predict_concurrency": 20}}))
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

	const n = 20
	start := time.Now()
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Post(s.url+"/v1/models/model:predict", "application/json", strings.NewReader(`{"sleep": 0.2}`))
			if err != nil {
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			statuses[i] = resp.StatusCode
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	t.Logf("%d parallel requests of 200 ms took %s", n, elapsed)
	for i, st := range statuses {
		assert.Equal(t, 200, st, "request %d", i)
	}
	assert.Less(t, elapsed, 1500*time.Millisecond, "%d requests of 200 ms each took %s; serially it would be %s", n, elapsed, n*200*time.Millisecond)
}

func TestServer_MapsBadInputAndModelErrorsToStatusCodes(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePackage(t, plainConfig, `
class Model:
    def predict(self, model_input):
        if model_input == "raise":
            raise ValueError("bad input: " + model_input)
        if model_input == "set":
            return {"s": {1, 2}}
        return model_input
`), nil)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

	tests := []struct {
		name       string
		body       string
		wantStatus int
		wantBody   string
	}{
		{"model exception is 500 with its type and text", `"raise"`, 500, `{"error": "ValueError: bad input: raise"}`},
		{"result that is not JSON is 500", `"set"`, 500, `{"error": "TypeError: Object of type set is not JSON serializable"}`},
		{"truncated JSON is 400", `{"a":`, 400, ``},
		{"empty body is 400", ``, 400, ``},
		{"text is 400", `not json`, 400, ``},
		{"JSON null is valid input", `null`, 200, `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Post(s.url+"/v1/models/model:predict", "application/json", strings.NewReader(tt.body))
			require.NoError(t, err)
			defer resp.Body.Close()
			raw, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tt.wantStatus, resp.StatusCode, "body %q answered %s", tt.body, raw)
			if tt.wantBody != "" {
				assert.JSONEq(t, tt.wantBody, string(raw))
			} else {
				assert.Contains(t, string(raw), "invalid JSON body")
			}
		})
	}
	assert.Eventually(t, func() bool { return strings.Contains(s.stderr.String(), "Traceback") },
		2*time.Second, 20*time.Millisecond, "a model exception prints its traceback on stderr")
	status, _ := s.get(t, "/v1/models/model")
	assert.Equal(t, 200, status, "failed predictions leave the model ready")
}

func TestServer_LoadFailureMakesHealth500WithItsText(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePackage(t, plainConfig, `
class Model:
    def load(self):
        raise RuntimeError("weights missing")
    def predict(self, model_input):
        return model_input
`), nil)
	s.waitFor(t, "/v1/models/model", 500, 5*time.Second)
	status, body := s.get(t, "/v1/models/model")
	assert.Equal(t, 500, status)
	assert.Equal(t, "RuntimeError: weights missing", body["error"])
	assert.Equal(t, false, body["ready"])
	status, _ = s.get(t, "/healthz")
	assert.Equal(t, 200, status, "liveness stays 200")
	status, body = s.predict(t, `{}`)
	assert.Equal(t, 503, status)
	assert.Contains(t, body["error"], "weights missing")
}

func TestServer_ImportErrorMakesHealth500(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePackage(t, plainConfig, "import not_a_module_anywhere\n"), nil)
	s.waitFor(t, "/v1/models/model", 500, 5*time.Second)
	_, body := s.get(t, "/v1/models/model")
	assert.Contains(t, body["error"], "ModuleNotFoundError")
}

func TestServer_SIGTERMFinishesInFlightRequestAndExits0(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, sleepyModel)
	s := startServer(t, pkg, nil)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

	type result struct {
		status int
		body   string
		err    error
	}
	done := make(chan result, 1)
	go func() {
		resp, err := http.Post(s.url+"/v1/models/model:predict", "application/json", strings.NewReader(`{"sleep": 1.5}`))
		if err != nil {
			done <- result{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		done <- result{status: resp.StatusCode, body: string(b)}
	}()
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(pkg, "data", "started"))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond, "predict never started")

	require.NoError(t, s.cmd.Process.Signal(syscall.SIGTERM))
	// New connections are refused while the in-flight request still runs.
	assert.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", strings.TrimPrefix(s.url, "http://"), 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, time.Second, 20*time.Millisecond, "listener still accepting after SIGTERM")
	select {
	case <-s.exited:
		t.Fatalf("server exited before its in-flight request finished: %v", s.err)
	default:
	}

	r := <-done
	require.NoError(t, r.err, "in-flight request cut off")
	assert.Equal(t, 200, r.status)
	assert.JSONEq(t, `{"slept": 1.5}`, r.body)
	select {
	case <-s.exited:
		assert.NoError(t, s.err, "exit status 0 after SIGTERM")
	case <-time.After(5 * time.Second):
		t.Fatal("server did not exit after draining")
	}
}

func TestServer_StreamsWhatAGeneratorYields(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePackage(t, plainConfig, `
import time
class Model:
    def predict(self, model_input):
        for i in range(model_input["n"]):
            time.sleep(0.05)
            yield "data: %d\n\n" % i
`), nil)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

	req, err := http.NewRequest(http.MethodPost, s.url+"/v1/models/model:predict", strings.NewReader(`{"n": 3}`))
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))
	assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
	sc := bufio.NewScanner(resp.Body)
	var events []string
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			events = append(events, line)
		}
	}
	assert.Equal(t, []string{"data: 0", "data: 1", "data: 2"}, events)
}

func TestServer_AcceptsChunkedRequestBodyAndKeepsConnectionsAlive(t *testing.T) {
	t.Parallel()
	s := startServer(t, writePackage(t, plainConfig, "class Model:\n    def predict(self, x):\n        return {'got': x}\n"), nil)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	for i := range 3 {
		// A body of unknown length makes Go send it chunked.
		body := io.MultiReader(strings.NewReader(`{"i": `), strings.NewReader(fmt.Sprint(i)), strings.NewReader(`}`))
		resp, err := client.Post(s.url+"/v1/models/model:predict", "application/json", body)
		require.NoError(t, err)
		status, got := decode(t, resp)
		assert.Equal(t, 200, status)
		assert.Equal(t, map[string]any{"got": map[string]any{"i": float64(i)}}, got)
	}

	// Small answers must not wait for the client's delayed ACK (Nagle): 40 ms each if so.
	start := time.Now()
	for range 20 {
		resp, err := client.Post(s.url+"/v1/models/model:predict", "application/json", strings.NewReader(`1`))
		require.NoError(t, err)
		decode(t, resp)
	}
	assert.Less(t, time.Since(start), 500*time.Millisecond, "20 sequential predictions on one connection")
}

func TestServer_ServesConfiguredPathsAndLogsEachRequest(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, "model_name: tester\nhealth_path: /ready\npredict_path: /infer\n",
		"class Model:\n    def predict(self, x):\n        return x\n")
	s := startServer(t, pkg, nil)
	s.waitFor(t, "/ready", 200, 5*time.Second)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

	resp, err := http.Post(s.url+"/infer", "application/json", strings.NewReader(`{"a": 1}`))
	require.NoError(t, err)
	status, body := decode(t, resp)
	assert.Equal(t, 200, status)
	assert.Equal(t, map[string]any{"a": 1.0}, body)
	status, _ = s.get(t, "/nope")
	assert.Equal(t, 404, status)

	assert.Eventually(t, func() bool {
		return strings.Contains(s.stdout.String(), `"POST /infer" 200`) && strings.Contains(s.stdout.String(), `"GET /nope" 404`)
	}, 2*time.Second, 20*time.Millisecond, "one log line per request on stdout")
}

func TestServer_SIGHUPReloadsModelCodeLikeTheReloadRoute(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, "class Model:\n    def predict(self, x):\n        return {'version': 1}\n")
	s := startServer(t, pkg, nil)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	_, body := s.predict(t, `{}`)
	require.Equal(t, 1.0, body["version"])

	// A broken version stops the old model and says why on both paths.
	modelPy := filepath.Join(pkg, "model", "model.py")
	require.NoError(t, os.WriteFile(modelPy, []byte("raise ImportError('half-saved')\n"), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, h := s.get(t, "/v1/models/model")
		return h["reload_error"] != nil
	}, 5*time.Second, 20*time.Millisecond, "health never reported the failed reload")
	s.assertReloadFailed(t, "ImportError: half-saved")

	require.NoError(t, os.WriteFile(modelPy, []byte("class Model:\n    def predict(self, x):\n        return {'version': 2}\n"), 0o644))
	require.NoError(t, s.cmd.Process.Signal(syscall.SIGHUP))
	require.Eventually(t, func() bool {
		_, b := s.predict(t, `{}`)
		return b["version"] == 2.0
	}, 5*time.Second, 20*time.Millisecond, "new code serves after reload")
	s.assertHealthy(t)
}

const controlToken = "0123456789abcdef0123456789abcdef"

// withToken is the environment that enables the reload route.
var withToken = python.EnvControlToken + "=" + controlToken

// reload POSTs the reload route with token in the control header, or without the header
// when token is "".
func (s *server) reload(t *testing.T, token string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, s.url+python.ReloadPath, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set(python.ControlTokenHeader, token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	return decode(t, resp)
}

// assertReloadFailed checks what a server says after a failed reload: predict answers 500
// with the error, and health 200 (so the replica stays in rotation) with ready false.
func (s *server) assertReloadFailed(t *testing.T, cause string) {
	t.Helper()
	want := "model reload failed: " + cause
	status, body := s.predict(t, `{}`)
	assert.Equal(t, 500, status, "predict after a failed reload: %v", body)
	assert.Contains(t, body["error"], want, "predict's error after a failed reload")
	status, body = s.get(t, "/v1/models/model")
	assert.Equal(t, 200, status, "health after a failed reload keeps the replica in rotation: %v", body)
	assert.Equal(t, false, body["ready"], "health after a failed reload")
	assert.Contains(t, body["error"], want, "health's error after a failed reload")
	assert.Contains(t, body["reload_error"], want, "health's reload_error after a failed reload")
}

// assertHealthy checks that health answers 200, ready, with no error of any kind.
func (s *server) assertHealthy(t *testing.T) {
	t.Helper()
	status, body := s.get(t, "/v1/models/model")
	assert.Equal(t, 200, status, "health: %v", body)
	assert.Equal(t, map[string]any{"model_name": "tester", "ready": true}, body, "health with no error left")
}

// versionModel answers its version and the PID of the process that serves it.
func versionModel(version int) string {
	return fmt.Sprintf(`
import os

class Model:
    def predict(self, model_input):
        return {"version": %d, "pid": os.getpid()}
`, version)
}

func TestServer_ReloadRouteSwapsTheModelInTheSameProcess(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, versionModel(1))
	s := startServer(t, pkg, nil, withToken)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	pid := float64(s.cmd.Process.Pid)
	_, body := s.predict(t, `{}`)
	require.Equal(t, map[string]any{"version": 1.0, "pid": pid}, body)

	require.NoError(t, os.WriteFile(filepath.Join(pkg, "model", "model.py"), []byte(versionModel(2)), 0o644))
	status, body := s.reload(t, controlToken)
	require.Equal(t, 200, status, "reload with the right token: %v", body)
	assert.Equal(t, "ready", body["status"])
	assert.IsType(t, 0.0, body["seconds"], "seconds is a number: %v", body)

	status, body = s.predict(t, `{}`)
	assert.Equal(t, 200, status, "%v", body)
	assert.Equal(t, map[string]any{"version": 2.0, "pid": pid}, body, "the new code answers, from the same process")
	s.assertHealthy(t)
}

func TestServer_ReloadRouteNeedsTheControlToken(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, versionModel(1))
	s := startServer(t, pkg, nil, withToken)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "model", "model.py"), []byte(versionModel(2)), 0o644))

	for name, token := range map[string]string{
		"wrong token":    "fedcba9876543210fedcba9876543210",
		"token's prefix": controlToken[:16],
		"no header":      "",
	} {
		status, body := s.reload(t, token)
		assert.Equal(t, 403, status, "%s: %v", name, body)
		assert.NotEmpty(t, body["error"], "%s: 403 says why", name)
	}
	_, body := s.predict(t, `{}`)
	assert.Equal(t, 1.0, body["version"], "a refused reload leaves the running model alone")

	// Without a token in its environment, or with an empty one, the server has no such route.
	for _, env := range [][]string{nil, {python.EnvControlToken + "="}} {
		bare := startServer(t, writePackage(t, plainConfig, versionModel(1)), nil, env...)
		status, body := bare.reload(t, controlToken)
		assert.Equal(t, 404, status, "reload route with environment %q: %v", env, body)
	}
}

func TestServer_FailedReloadReportsItsErrorUntilAReloadSucceeds(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, versionModel(1))
	s := startServer(t, pkg, nil, withToken)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	modelPy := filepath.Join(pkg, "model", "model.py")

	// Code that does not compile.
	require.NoError(t, os.WriteFile(modelPy, []byte("class Model:\n    def predict(self, x)\n        return 1\n"), 0o644))
	status, body := s.reload(t, controlToken)
	assert.Equal(t, 500, status, "reload of a syntax error: %v", body)
	assert.Contains(t, body["error"], "model reload failed: SyntaxError", "reload's answer names the exception")
	s.assertReloadFailed(t, "SyntaxError")
	assert.Contains(t, s.stderr.String(), "Traceback", "the traceback goes to stderr")

	// Code that compiles but whose load() raises.
	require.NoError(t, os.WriteFile(modelPy, []byte(`
class Model:
    def load(self):
        raise RuntimeError("weights missing")
    def predict(self, x):
        return {"version": "never"}
`), 0o644))
	status, body = s.reload(t, controlToken)
	assert.Equal(t, 500, status, "reload whose load() raises: %v", body)
	assert.Equal(t, map[string]any{"error": "model reload failed: RuntimeError: weights missing"}, body)
	s.assertReloadFailed(t, "RuntimeError: weights missing")

	// Fixed code recovers, in the same process.
	require.NoError(t, os.WriteFile(modelPy, []byte(versionModel(3)), 0o644))
	status, body = s.reload(t, controlToken)
	require.Equal(t, 200, status, "reload of fixed code: %v", body)
	status, body = s.predict(t, `{}`)
	assert.Equal(t, 200, status, "%v", body)
	assert.Equal(t, map[string]any{"version": 3.0, "pid": float64(s.cmd.Process.Pid)}, body)
	s.assertHealthy(t)
}

func TestServer_ReloadRecoversFromAFailedFirstLoad(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, "class Model:\n    def load(self):\n        raise RuntimeError('weights missing')\n")
	s := startServer(t, pkg, nil, withToken)
	s.waitFor(t, "/v1/models/model", 500, 5*time.Second)

	require.NoError(t, os.WriteFile(filepath.Join(pkg, "model", "model.py"), []byte(versionModel(2)), 0o644))
	status, body := s.reload(t, controlToken)
	require.Equal(t, 200, status, "reload after a failed first load: %v", body)
	_, body = s.predict(t, `{}`)
	assert.Equal(t, 2.0, body["version"])
	s.assertHealthy(t)
}

func TestServer_ReloadReadsModelPysSiblingsAndBundledPackagesAgain(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, `
import helper
from shared import words

class Model:
    def predict(self, model_input):
        return {"helper": helper.VALUE, "words": words.VALUE}
`)
	write := func(rel, content string) {
		path := filepath.Join(pkg, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
	write("model/helper.py", "VALUE = 'helper 1'\n")
	// A namespace package (no __init__.py) under packages/.
	write("packages/shared/words.py", "VALUE = 'words 1'\n")
	s := startServer(t, pkg, nil, withToken)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	_, body := s.predict(t, `{}`)
	require.Equal(t, map[string]any{"helper": "helper 1", "words": "words 1"}, body)

	write("model/helper.py", "VALUE = 'helper 2'\n")
	write("packages/shared/words.py", "VALUE = 'words 2'\n")
	status, body := s.reload(t, controlToken)
	require.Equal(t, 200, status, "%v", body)
	_, body = s.predict(t, `{}`)
	assert.Equal(t, map[string]any{"helper": "helper 2", "words": "words 2"}, body,
		"a reload re-imports model.py's sibling and the bundled package, not only model.py")
}

func TestServer_SecondReloadWhileOneRunsIs409(t *testing.T) {
	t.Parallel()
	pkg := writePackage(t, plainConfig, versionModel(1))
	s := startServer(t, pkg, nil, withToken)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	gate := filepath.Join(pkg, "data", "gate")
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "model", "model.py"), []byte(`
import os, time

class Model:
    def __init__(self, data_dir, **kwargs):
        self.data_dir = data_dir

    def load(self):
        open(os.path.join(self.data_dir, "loading"), "w").close()
        while not os.path.exists(os.path.join(self.data_dir, "gate")):
            time.sleep(0.01)

    def predict(self, model_input):
        return {"version": 2}
`), 0o644))

	type answer struct {
		status int
		body   string
		err    error
	}
	first := make(chan answer, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, s.url+python.ReloadPath, nil)
		req.Header.Set(python.ControlTokenHeader, controlToken)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			first <- answer{err: err}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		first <- answer{status: resp.StatusCode, body: string(b)}
	}()
	require.Eventually(t, func() bool {
		_, err := os.Stat(filepath.Join(pkg, "data", "loading"))
		return err == nil
	}, 5*time.Second, 10*time.Millisecond, "the first reload never reached load()")

	status, body := s.reload(t, controlToken)
	assert.Equal(t, 409, status, "reload while another runs: %v", body)
	assert.Equal(t, map[string]any{"error": "a reload is already running"}, body)
	_, body = s.predict(t, `{}`)
	assert.Equal(t, 1.0, body["version"], "the old model serves while the new one loads")

	require.NoError(t, os.WriteFile(gate, nil, 0o644))
	select {
	case a := <-first:
		require.NoError(t, a.err, "the first reload")
		assert.Equal(t, 200, a.status, "the first reload: %s", a.body)
	case <-time.After(5 * time.Second):
		t.Fatal("the first reload did not answer after its load() returned")
	}
	_, body = s.predict(t, `{}`)
	assert.Equal(t, 2.0, body["version"])
}

func TestExampleEcho_RunsFromItsPackedArchive(t *testing.T) {
	t.Parallel()
	var buf bytes.Buffer
	sum, err := modelpkg.Pack("../../examples/models/echo", &buf)
	require.NoError(t, err)
	dest := filepath.Join(t.TempDir(), "echo")
	cfg, err := modelpkg.Extract(&buf, "sha256:"+sum, dest)
	require.NoError(t, err)
	require.Equal(t, "echo", cfg.ModelName)

	s := startServer(t, dest, nil, "MODELPLANE_ENVIRONMENT=production")
	s.waitFor(t, cfg.HealthPath, 200, 5*time.Second)
	status, body := s.predict(t, `{"text": "hi"}`)
	require.Equal(t, 200, status, "%v", body)
	assert.Equal(t, map[string]any{"text": "hi"}, body["echo"])
	assert.Equal(t, "production", body["environment"])
	assert.Equal(t, "echo", body["model_name"])
}

// configEnv is the environment entry that gives server.py pkgDir's config as JSON with the
// given top-level keys replaced, for shapes that config.yaml cannot carry through
// modelpkg.ReadConfig (Truss's `runtime:` mapping). It follows python.Env's entry, and the
// last entry of a name wins.
func configEnv(t *testing.T, pkgDir string, set map[string]any) string {
	t.Helper()
	cfg, err := modelpkg.ReadConfig(pkgDir)
	require.NoError(t, err)
	raw, err := cfg.JSON()
	require.NoError(t, err)
	var obj map[string]any
	require.NoError(t, json.Unmarshal(raw, &obj))
	for k, v := range set {
		obj[k] = v
	}
	out, err := json.Marshal(obj)
	require.NoError(t, err)
	return python.EnvConfigJSON + "=" + string(out)
}

// writeFiles writes each file (a slash-separated path relative to dir) with its content.
func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for rel, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(rel))
		require.NoError(t, os.MkdirAll(filepath.Dir(path), 0o755))
		require.NoError(t, os.WriteFile(path, []byte(content), 0o644))
	}
}

// countingModel records how many predict calls run in it at once. Each call stays until
// all `total` calls have entered or `hold` seconds passed, so that every call the server
// lets in meanwhile is counted whatever the machine's speed; it answers the most seen.
const countingModel = `
import threading, time

changed = threading.Condition()
state = {"inside": 0, "entered": 0, "most": 0}

class Model:
    def predict(self, model_input):
        with changed:
            state["inside"] += 1
            state["entered"] += 1
            state["most"] = max(state["most"], state["inside"])
            changed.notify_all()
            deadline = time.monotonic() + model_input["hold"]
            while state["entered"] < model_input["total"]:
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                changed.wait(left)
            state["inside"] -= 1
            return {"most": state["most"]}
`

func TestServer_PredictConcurrencyBoundsCallsInTheModel(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		runtime map[string]any // the config's runtime mapping; nil: no such key
		want    int
		hold    float64
	}{
		// A call alone in the model waits its whole hold, so a short one keeps this case quick;
		// the bound cannot be exceeded by slowness.
		{"default is one at a time", nil, 1, 0.3},
		{"one", map[string]any{"predict_concurrency": 1}, 1, 0.3},
		// Three calls must all get in while the first holds: a long hold makes that certain.
		{"three", map[string]any{"predict_concurrency": 3}, 3, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			pkg := writePackage(t, plainConfig, countingModel)
			var env []string
			if tt.runtime != nil {
				env = append(env, configEnv(t, pkg, map[string]any{"runtime": tt.runtime}))
			}
			s := startServer(t, pkg, nil, env...)
			s.waitFor(t, "/v1/models/model", 200, 5*time.Second)

			// One call more than the bound: if the server let it in too, the most seen says so.
			total := tt.want + 1
			body := fmt.Sprintf(`{"total": %d, "hold": %g}`, total, tt.hold)
			var wg sync.WaitGroup
			answers := make([]map[string]any, total)
			statuses := make([]int, total)
			for i := range total {
				wg.Add(1)
				go func() {
					defer wg.Done()
					resp, err := http.Post(s.url+"/v1/models/model:predict", "application/json", strings.NewReader(body))
					if err != nil {
						return
					}
					defer resp.Body.Close()
					statuses[i] = resp.StatusCode
					_ = json.NewDecoder(resp.Body).Decode(&answers[i])
				}()
			}
			// Health and liveness answer while predict calls hold or wait for every slot.
			status, _ := s.get(t, "/v1/models/model")
			assert.Equal(t, 200, status, "health while predict calls wait")
			status, _ = s.get(t, "/healthz")
			assert.Equal(t, 200, status, "liveness while predict calls wait")
			wg.Wait()

			most := 0.0
			for i := range total {
				require.Equal(t, 200, statuses[i], "request %d: %v", i, answers[i])
				most = max(most, answers[i]["most"].(float64))
			}
			assert.Equal(t, float64(tt.want), most, "the most predict calls in the model at once")
		})
	}
}

// layoutConfig moves every part of the package away from Truss's defaults.
const layoutConfig = `model_name: tester
model_module_dir: src
model_class_filename: my_model.py
model_class_name: MyModel
data_dir: assets
bundled_packages_dir: libs
external_package_dirs:
  - ../shared_lib
  - vendor
`

// layoutModel is src/my_model.py: it imports from its own directory, the bundled packages
// and both external package directories, and reads its data directory.
func layoutModel(version int) string {
	return fmt.Sprintf(`
import helper
import extlib
import vendored
from libpkg import words

class MyModel:
    def __init__(self, data_dir, **kwargs):
        self.data_dir = data_dir

    def predict(self, model_input):
        return {
            "version": %d,
            "data_dir": str(self.data_dir),
            "data_dir_type": type(self.data_dir).__name__,
            "greeting": (self.data_dir / "greeting.txt").read_text(),
            "helper": helper.VALUE,
            "words": words.VALUE,
            "extlib": extlib.VALUE,
            "vendored": vendored.VALUE,
        }
`, version)
}

// writeLayoutPackage writes a package in layoutConfig's layout, with decoys where the
// defaults would look. The first external directory lies outside the package, so it is where
// the packer puts it: .external/0.
func writeLayoutPackage(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"config.yaml":                 layoutConfig,
		"model/model.py":              "class Model:\n    def predict(self, x):\n        return {'version': 'the default layout'}\n",
		"packages/libpkg/__init__.py": "",
		"packages/libpkg/words.py":    "VALUE = 'the default packages dir'\n",
		"src/my_model.py":             layoutModel(1),
		"src/helper.py":               "VALUE = 'helper 1'\n",
		"assets/greeting.txt":         "hello from assets",
		"libs/libpkg/__init__.py":     "",
		"libs/libpkg/words.py":        "VALUE = 'words 1'\n",
		".external/0/extlib.py":       "VALUE = 'extlib 1'\n",
		"vendor/vendored.py":          "VALUE = 'vendored 1'\n",
	})
	return dir
}

func TestServer_HonoursTheConfigsPackageLayout(t *testing.T) {
	t.Parallel()
	pkg := writeLayoutPackage(t)
	s := startServer(t, pkg, nil)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	status, body := s.predict(t, `{}`)
	require.Equal(t, 200, status, "%v", body)
	assert.Equal(t, map[string]any{
		"version":       1.0,
		"data_dir":      filepath.Join(pkg, "assets"),
		"data_dir_type": "PosixPath",
		"greeting":      "hello from assets",
		"helper":        "helper 1",
		"words":         "words 1",
		"extlib":        "extlib 1",
		"vendored":      "vendored 1",
	}, body, "model_module_dir, model_class_filename, model_class_name, data_dir, "+
		"bundled_packages_dir and both kinds of external_package_dirs entry")
}

func TestServer_ReloadReadsTheConfiguredModuleAndPackageDirsAgain(t *testing.T) {
	t.Parallel()
	pkg := writeLayoutPackage(t)
	s := startServer(t, pkg, nil, withToken)
	s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
	_, body := s.predict(t, `{}`)
	require.Equal(t, 1.0, body["version"], "%v", body)

	writeFiles(t, pkg, map[string]string{
		"src/my_model.py":       layoutModel(2),
		"src/helper.py":         "VALUE = 'helper 2'\n",
		"libs/libpkg/words.py":  "VALUE = 'words 2'\n",
		".external/0/extlib.py": "VALUE = 'extlib 2'\n",
		"vendor/vendored.py":    "VALUE = 'vendored 2'\n",
	})
	status, body := s.reload(t, controlToken)
	require.Equal(t, 200, status, "%v", body)
	status, body = s.predict(t, `{}`)
	require.Equal(t, 200, status, "%v", body)
	assert.Equal(t, 2.0, body["version"], "the edited module in model_module_dir")
	assert.Equal(t, "helper 2", body["helper"], "its sibling in model_module_dir")
	assert.Equal(t, "words 2", body["words"], "bundled_packages_dir")
	assert.Equal(t, "extlib 2", body["extlib"], "external_package_dirs' .external/0")
	assert.Equal(t, "vendored 2", body["vendored"], "external_package_dirs' entry inside the package")
}

func TestServer_LayoutFailuresNameTheConfiguredFileAndClass(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name   string
		config string
		want   string // the start of health's error; "" for a model that loads
	}{
		{"missing module dir", "model_module_dir: src\n", "FileNotFoundError: src/model.py not found in "},
		{"missing module file", "model_class_filename: my_model.py\n", "FileNotFoundError: model/my_model.py not found in "},
		{"missing class", "model_class_name: MyModel\n", "AttributeError: model/model.py defines no class MyModel"},
		{"a number for a path", "model_module_dir: 5\n", "FileNotFoundError: 5/model.py not found in "},
		{"null keys take the defaults", "model_module_dir: ~\nmodel_class_filename: ~\nmodel_class_name: ~\n" +
			"data_dir: ~\nbundled_packages_dir: ~\nexternal_package_dirs: ~\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			s := startServer(t, writePackage(t, plainConfig+tt.config, versionModel(1)), nil)
			if tt.want == "" {
				s.waitFor(t, "/v1/models/model", 200, 5*time.Second)
				_, body := s.predict(t, `{}`)
				assert.Equal(t, 1.0, body["version"], "%v", body)
				return
			}
			s.waitFor(t, "/v1/models/model", 500, 5*time.Second)
			_, body := s.get(t, "/v1/models/model")
			assert.Contains(t, body["error"], tt.want)
			assert.True(t, strings.HasPrefix(fmt.Sprint(body["error"]), tt.want), "%v", body["error"])
		})
	}
}

func TestServer_ReportsTheModulesTheLoadImported(t *testing.T) {
	lib := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(lib, "mp_reported_mod.py"), []byte("X = 1\n"), 0o644))
	pkg := writePackage(t, "model_name: m\n",
		"import json, mp_reported_mod\nimport helper\n\nclass Model:\n    def predict(self, r):\n        return r\n")
	require.NoError(t, os.WriteFile(filepath.Join(pkg, "model", "helper.py"), []byte("Y = 2\n"), 0o644))
	report := filepath.Join(t.TempDir(), "imported.json")
	s := startServer(t, pkg, nil, "PYTHONPATH="+lib, python.EnvImportsReport+"="+report)
	s.waitFor(t, "/v1/models/model", 200, 10*time.Second)
	var mods []string
	require.Eventually(t, func() bool {
		b, err := os.ReadFile(report)
		return err == nil && json.Unmarshal(b, &mods) == nil
	}, 5*time.Second, 10*time.Millisecond)
	assert.Contains(t, mods, "mp_reported_mod")
	assert.NotContains(t, mods, "json", "the standard library is not reported")
	assert.NotContains(t, mods, "helper", "the package's own modules are not reported")
	assert.NotContains(t, mods, "model")
}

func TestServer_AReportThatCannotBeWrittenDoesNotStopTheModel(t *testing.T) {
	pkg := writePackage(t, "model_name: m\n", "class Model:\n    def predict(self, r):\n        return r\n")
	report := filepath.Join(t.TempDir(), "missing-dir", "imported.json")
	s := startServer(t, pkg, nil, python.EnvImportsReport+"="+report)
	s.waitFor(t, "/v1/models/model", 200, 10*time.Second)
	status, _ := s.predict(t, `{"a": 1}`)
	require.Equal(t, 200, status)
	require.Eventually(t, func() bool { return strings.Contains(s.stderr.String(), "writing the imported modules to") },
		5*time.Second, 10*time.Millisecond)
}
