package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const predictModelID = "q4z8m2xw"

// seenRequest is what the fake gateway saw of one request.
type seenRequest struct {
	method, path, auth, accept, body string
}

// fakeGateway is an API and gateway in one, as in `modelplane dev`: it lists one model
// named echo for name lookups and answers predictions with answer.
type fakeGateway struct {
	url  string
	seen chan seenRequest
}

func newFakeGateway(t *testing.T, answer http.HandlerFunc) *fakeGateway {
	t.Helper()
	g := &fakeGateway{seen: make(chan seenRequest, 16)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		g.seen <- seenRequest{method: r.Method, path: r.URL.EscapedPath(), auth: r.Header.Get("Authorization"),
			accept: r.Header.Get("Accept"), body: string(b)}
		r.Body = io.NopCloser(bytes.NewReader(b))
		if r.URL.Path == "/v1/models" {
			_, _ = io.WriteString(w, `{"models": [{"id": "`+predictModelID+`", "name": "echo"}, {"id": "b7c8d9e0", "name": "llama3b8"}]}`)
			return
		}
		answer(w, r)
	}))
	t.Cleanup(srv.Close)
	g.url = srv.URL
	return g
}

// requests drains what the gateway has seen so far.
func (g *fakeGateway) requests() []seenRequest {
	var out []seenRequest
	for {
		select {
		case r := <-g.seen:
			out = append(out, r)
		default:
			return out
		}
	}
}

// echoAnswer answers with the request's path and body, so a test sees both came through.
func echoAnswer(w http.ResponseWriter, r *http.Request) {
	b, _ := io.ReadAll(r.Body)
	w.Header().Set("Content-Type", "application/json")
	_, _ = io.WriteString(w, r.URL.Path+" "+string(b))
}

// env points the command at g with a key, as a user's shell would.
func (g *fakeGateway) env() []string {
	return []string{"MODELPLANE_URL=" + g.url, "MODELPLANE_API_KEY=mp_key"}
}

// runPredict is runClient with stdin.
func runPredict(t *testing.T, stdin string, env []string, args ...string) cliResult {
	t.Helper()
	cmd := predictCmd(env, args...)
	cmd.Stdin = strings.NewReader(stdin)
	return runCmd(t, cmd)
}

// predictCmd is `modelplane predict args...` in an empty directory with env as the only
// MODELPLANE_ settings.
func predictCmd(env []string, args ...string) *exec.Cmd {
	cmd := modelplaneCmd(append([]string{"predict"}, args...)...)
	cmd.Dir = os.TempDir()
	kept := []string{"MODELPLANE_TEST_MAIN=1"}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "MODELPLANE_") {
			kept = append(kept, kv)
		}
	}
	cmd.Env = append(kept, env...)
	return cmd
}

func TestPredictCmd_EachTargetFlagPostsTheJSONToItsPath(t *testing.T) {
	g := newFakeGateway(t, echoAnswer)
	body := `{"prompt": "hi", "max_tokens": 3}`
	for _, tc := range []struct {
		flags []string
		path  string
	}{
		{nil, "/models/q4z8m2xw/production/predict"},
		{[]string{"--environment", "staging"}, "/models/q4z8m2xw/environments/staging/predict"},
		{[]string{"--development"}, "/models/q4z8m2xw/development/predict"},
		{[]string{"--deployment", "d1d2d3d4"}, "/models/q4z8m2xw/deployment/d1d2d3d4/predict"},
	} {
		r := runPredict(t, "", g.env(), append([]string{predictModelID, body}, tc.flags...)...)
		require.Zero(t, r.exit, "%v: %s", tc.flags, r.stderr)
		require.Equal(t, tc.path+" "+body, r.stdout, "%v: the answer must be printed as is", tc.flags)
		require.Equal(t, []seenRequest{{method: http.MethodPost, path: tc.path, auth: "Api-Key mp_key", body: body}},
			g.requests(), "%v: an ID needs no lookup, only the prediction", tc.flags)
	}
}

func TestPredictCmd_RequestComesFromStdinWhenTheArgumentIsDashOrMissing(t *testing.T) {
	g := newFakeGateway(t, echoAnswer)
	for _, args := range [][]string{{predictModelID, "-"}, {predictModelID}} {
		r := runPredict(t, "[1, 2, 3]\n", g.env(), args...)
		require.Zero(t, r.exit, "%v: %s", args, r.stderr)
		require.Equal(t, "/models/q4z8m2xw/production/predict [1, 2, 3]\n", r.stdout, "%v", args)
		require.Len(t, g.requests(), 1, "%v", args)
	}

	r := runPredict(t, "", g.env(), predictModelID, "-")
	require.NotZero(t, r.exit)
	require.Equal(t, "Error: no request on stdin: give the JSON as the second argument or pipe it in\n", r.stderr)
	require.Empty(t, g.requests())
}

func TestPredictCmd_InvalidJSONIsRefusedBeforeSending(t *testing.T) {
	g := newFakeGateway(t, echoAnswer)
	r := runPredict(t, "", g.env(), predictModelID, "{prompt: hi}")
	require.Equal(t, 1, r.exit)
	require.Empty(t, r.stdout)
	require.Equal(t, `Error: the JSON argument is not valid JSON: invalid character 'p' looking for beginning of object key string `+
		`(at byte 2); quote it for the shell, e.g. '{"prompt": "hi"}'`+"\n", r.stderr)

	r = runPredict(t, `{"a": 1} trailing`, g.env(), predictModelID)
	require.Equal(t, 1, r.exit)
	require.True(t, strings.HasPrefix(r.stderr, "Error: stdin is not valid JSON: invalid character 't' after top-level value"), r.stderr)
	require.Empty(t, g.requests(), "nothing may be sent")
}

func TestPredictCmd_ConflictingTargetFlagsAreNamed(t *testing.T) {
	g := newFakeGateway(t, echoAnswer)
	for _, tc := range []struct {
		flags []string
		want  string
	}{
		{[]string{"--environment", "staging", "--development"},
			"Error: --environment staging and --development cannot go together: a request goes to one target (production when none is given)\n"},
		{[]string{"--development", "--deployment", "d1d2d3d4"},
			"Error: --development and --deployment d1d2d3d4 cannot go together: a request goes to one target (production when none is given)\n"},
		{[]string{"--environment", "qa", "--development", "--deployment", "d1d2d3d4"},
			"Error: --environment qa, --development and --deployment d1d2d3d4 cannot go together: a request goes to one target (production when none is given)\n"},
		{[]string{"--environment", ""}, "Error: --environment needs a name\n"},
	} {
		r := runPredict(t, "", g.env(), append([]string{predictModelID, "{}"}, tc.flags...)...)
		require.Equal(t, 1, r.exit, "%v", tc.flags)
		require.Equal(t, tc.want, r.stderr, "%v", tc.flags)
	}
	require.Empty(t, g.requests(), "nothing may be sent")
}

func TestPredictCmd_NotFoundShowsTheGatewaysMessage(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"error": {"code": "not_found", "message": "deployment \"d1d2d3d4\" is deactivated"}}`)
	})
	r := runPredict(t, "", g.env(), predictModelID, "{}", "--deployment", "d1d2d3d4")
	require.Equal(t, 1, r.exit)
	require.Empty(t, r.stdout)
	require.Equal(t, "Error: deployment \"d1d2d3d4\" is deactivated (HTTP 404 not_found)\n", r.stderr)
}

func TestPredictCmd_UnavailableSaysWhenToRetry(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Retry-After", "12")
		w.WriteHeader(http.StatusServiceUnavailable)
		_, _ = io.WriteString(w, `{"error": {"code": "unavailable", "message": "no replica is ready"}}`)
	})
	r := runPredict(t, "", g.env(), predictModelID, "{}")
	require.Equal(t, 1, r.exit)
	require.Equal(t, "Error: no replica is ready (HTTP 503 unavailable); retry in 12s\n", r.stderr)
}

func TestPredictCmd_ModelNameIsLookedUp(t *testing.T) {
	g := newFakeGateway(t, echoAnswer)
	r := runPredict(t, "", g.env(), "echo", `"x"`)
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, `/models/q4z8m2xw/production/predict "x"`, r.stdout)
	reqs := g.requests()
	require.Len(t, reqs, 2)
	require.Equal(t, "/v1/models", reqs[0].path)
	require.Equal(t, "/models/q4z8m2xw/production/predict", reqs[1].path)
}

func TestPredictCmd_NameShapedLikeAnIDIsLookedUpWhenTheGatewayDoesNotKnowIt(t *testing.T) {
	g := newFakeGateway(t, func(w http.ResponseWriter, r *http.Request) {
		if id := strings.Split(r.URL.Path, "/")[2]; id != "b7c8d9e0" {
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"error": {"code": "not_found", "message": "model \"`+id+`\" not found"}}`)
			return
		}
		echoAnswer(w, r)
	})
	r := runPredict(t, "", g.env(), "llama3b8", "{}")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, "/models/b7c8d9e0/production/predict {}", r.stdout)
	var paths []string
	for _, req := range g.requests() {
		paths = append(paths, req.path)
	}
	require.Equal(t, []string{"/models/llama3b8/production/predict", "/v1/models", "/models/b7c8d9e0/production/predict"}, paths)

	// An unknown ID keeps the gateway's answer.
	r = runPredict(t, "", g.env(), "zzzzzzzz", "{}", "--development")
	require.Equal(t, 1, r.exit)
	require.Equal(t, "Error: model \"zzzzzzzz\" not found (HTTP 404 not_found)\n", r.stderr)
	require.Len(t, g.requests(), 2, "the prediction and the lookup, no second prediction")
}

func TestPredictCmd_GatewayURLComesFromItsOwnVariable(t *testing.T) {
	apiSrv := newFakeGateway(t, echoAnswer)
	gw := newFakeGateway(t, echoAnswer)
	r := runPredict(t, "", append(apiSrv.env(), "MODELPLANE_GATEWAY_URL="+gw.url), predictModelID, "{}")
	require.Zero(t, r.exit, r.stderr)
	require.Equal(t, "/models/q4z8m2xw/production/predict {}", r.stdout)
	require.Empty(t, apiSrv.requests(), "the prediction must go to the gateway only")
	require.Len(t, gw.requests(), 1)

	r = runPredict(t, "", append(apiSrv.env(), "MODELPLANE_GATEWAY_URL=http://"+freeAddr(t)), predictModelID, "{}")
	require.Equal(t, 1, r.exit)
	require.Contains(t, r.stderr, "Error: cannot reach the gateway at http://")
	require.Contains(t, r.stderr, "MODELPLANE_GATEWAY_URL")
}

func TestPredictCmd_StreamPrintsEachEventAsItArrives(t *testing.T) {
	firstSeen := make(chan struct{})
	g := newFakeGateway(t, func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: one\n\n")
		w.(http.Flusher).Flush()
		// The answer goes on only once the command has printed the first event.
		select {
		case <-firstSeen:
		case <-time.After(20 * time.Second):
			return
		}
		_, _ = io.WriteString(w, "data: two\n\n")
	})
	cmd := predictCmd(g.env(), predictModelID, `{"stream": true}`, "--stream")
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() { _ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })

	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		require.Equal(t, "data: one", l)
	case <-time.After(15 * time.Second):
		t.Fatalf("the first event was not printed while the answer was still open; stderr:\n%s", stderr.String())
	}
	close(firstSeen)
	var rest []string
	for l := range lines {
		rest = append(rest, l)
	}
	require.NoError(t, cmd.Wait(), stderr.String())
	require.Equal(t, []string{"", "data: two", ""}, rest)
	reqs := g.requests()
	require.Len(t, reqs, 1)
	require.Equal(t, "text/event-stream", reqs[0].accept)
}
