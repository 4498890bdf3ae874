package testmodel_test

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modelplane/modelplane/internal/proctest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/testmodel"
)

// running is a test model served on a real listener.
type running struct {
	url    string
	addr   string
	cancel context.CancelFunc
	done   chan error
	log    *proctest.Buffer
}

func serve(t *testing.T, opts testmodel.Options) *running {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{url: "http://" + ln.Addr().String(), addr: ln.Addr().String(), cancel: cancel,
		done: make(chan error, 1), log: &proctest.Buffer{}}
	go func() { r.done <- testmodel.Serve(ctx, ln, opts, r.log) }()
	t.Cleanup(func() {
		cancel()
		<-r.done
	})
	return r
}

type response struct {
	status int
	header http.Header
	body   []byte
}

func do(t *testing.T, method, url, body string, header ...string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	require.NoError(t, err)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{status: resp.StatusCode, header: resp.Header, body: b}
}

func TestHealth_Is503UntilLoadTimePassesThen200(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{LoadTime: 300 * time.Millisecond})
	start := time.Now()
	assert.Equal(t, 503, do(t, "GET", m.url+"/health", "").status)
	require.Eventually(t, func() bool { return do(t, "GET", m.url+"/health", "").status == 200 },
		3*time.Second, 10*time.Millisecond)
	assert.GreaterOrEqual(t, time.Since(start), 250*time.Millisecond, "ready too early")
}

func TestPredict_EchoesBodyWithPadAndPID(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{ResponseBytes: 10})
	tests := []struct {
		name, body, wantOutput string
	}{
		{"object", `{"prompt": "hi"}`, `{"prompt":"hi"}`},
		{"number", `3`, `3`},
		{"empty body is null", ``, `null`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := do(t, "POST", m.url+"/predict", tt.body)
			require.Equal(t, 200, r.status, "%s", r.body)
			var got struct {
				Output json.RawMessage `json:"output"`
				Pad    string          `json:"pad"`
				PID    int             `json:"pid"`
			}
			require.NoError(t, json.Unmarshal(r.body, &got))
			assert.JSONEq(t, tt.wantOutput, string(got.Output))
			assert.Equal(t, "xxxxxxxxxx", got.Pad)
			assert.Equal(t, os.Getpid(), got.PID)
			assert.Equal(t, "application/json", r.header.Get("Content-Type"))
		})
	}
}

func TestPredict_InvalidJSONIs400(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{})
	r := do(t, "POST", m.url+"/predict", `{"a":`)
	assert.Equal(t, 400, r.status)
	assert.JSONEq(t, `{"error": "invalid JSON body"}`, string(r.body))
}

func TestPredict_TakesLatency(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{Latency: 200 * time.Millisecond})
	start := time.Now()
	assert.Equal(t, 200, do(t, "POST", m.url+"/predict", `{}`).status)
	elapsed := time.Since(start)
	assert.GreaterOrEqual(t, elapsed, 200*time.Millisecond)
	assert.Less(t, elapsed, 2*time.Second)
}

func TestPredict_FailsAtTheFailureRate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		rate         float64
		minFailures  int
		maxFailures  int
		wantFailBody bool
	}{
		{rate: 0, minFailures: 0, maxFailures: 0},
		{rate: 1, minFailures: 200, maxFailures: 200, wantFailBody: true},
		// Binomial(200, 0.5): outside [60, 140] has a probability below 1e-8.
		{rate: 0.5, minFailures: 60, maxFailures: 140},
	}
	for _, tt := range tests {
		m := serve(t, testmodel.Options{FailureRate: tt.rate})
		failures := 0
		for range 200 {
			r := do(t, "POST", m.url+"/predict", `{}`)
			if r.status == 500 {
				failures++
				if tt.wantFailBody {
					assert.JSONEq(t, `{"error": "injected failure"}`, string(r.body))
				}
			} else {
				require.Equal(t, 200, r.status)
			}
		}
		assert.GreaterOrEqual(t, failures, tt.minFailures, "rate %v", tt.rate)
		assert.LessOrEqual(t, failures, tt.maxFailures, "rate %v", tt.rate)
	}
}

func TestPredict_StreamsFiveEventsSpreadOverLatency(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{Latency: 250 * time.Millisecond})
	req, err := http.NewRequest("POST", m.url+"/predict", strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Header.Set("Accept", "text/event-stream")
	start := time.Now()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	require.Equal(t, 200, resp.StatusCode)
	assert.Equal(t, "text/event-stream", resp.Header.Get("Content-Type"))

	var events []string
	var firstAt time.Duration
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if line := sc.Text(); line != "" {
			if len(events) == 0 {
				firstAt = time.Since(start)
			}
			events = append(events, line)
		}
	}
	total := time.Since(start)
	assert.Equal(t, []string{"data: 1", "data: 2", "data: 3", "data: 4", "data: 5"}, events)
	assert.Less(t, firstAt, 200*time.Millisecond, "first event flushed before the rest (after %s)", firstAt)
	assert.GreaterOrEqual(t, total, 250*time.Millisecond, "all events take the latency")
}

func TestStats_CountRequestsAndInFlight(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{Latency: 300 * time.Millisecond})
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			do(t, "POST", m.url+"/predict", `{}`)
		}()
	}
	stats := func() testmodel.Stats {
		var s testmodel.Stats
		require.NoError(t, json.Unmarshal(do(t, "GET", m.url+"/stats", "").body, &s))
		return s
	}
	require.Eventually(t, func() bool { return stats().InFlight == 3 }, 2*time.Second, 10*time.Millisecond)
	wg.Wait()
	assert.Equal(t, testmodel.Stats{Requests: 3, InFlight: 0}, stats())
}

func TestServe_ShutdownLetsInFlightRequestsFinish(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{Latency: 500 * time.Millisecond})
	got := make(chan response, 1)
	go func() { got <- do(t, "POST", m.url+"/predict", `{"a": 1}`) }()
	require.Eventually(t, func() bool {
		var s testmodel.Stats
		return json.Unmarshal(do(t, "GET", m.url+"/stats", "").body, &s) == nil && s.InFlight == 1
	}, 2*time.Second, 10*time.Millisecond)

	m.cancel()
	// The listener closes at once...
	require.Eventually(t, func() bool {
		c, err := net.DialTimeout("tcp", m.addr, 100*time.Millisecond)
		if err == nil {
			c.Close()
		}
		return err != nil
	}, time.Second, 10*time.Millisecond, "still accepting after shutdown began")
	// ...and the request in flight is still answered.
	r := <-got
	assert.Equal(t, 200, r.status)
	assert.Contains(t, string(r.body), `"output":{"a":1}`)
	select {
	case err := <-m.done:
		assert.NoError(t, err)
		m.done <- err // for the cleanup
	case <-time.After(3 * time.Second):
		t.Fatal("Serve did not return after shutdown")
	}
}

func TestServe_LogsOneLinePerRequest(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{})
	do(t, "GET", m.url+"/health", "")
	do(t, "POST", m.url+"/predict", `{}`)
	do(t, "GET", m.url+"/nope", "")
	lines := strings.Split(strings.TrimSpace(m.log.String()), "\n")
	require.Len(t, lines, 3, "log:\n%s", m.log)
	assert.Contains(t, lines[0], "path=/health")
	assert.Contains(t, lines[0], "status=200")
	assert.Contains(t, lines[1], "method=POST path=/predict status=200")
	assert.Contains(t, lines[2], "status=404")
}

func TestServe_RejectsInvalidOptions(t *testing.T) {
	t.Parallel()
	for _, opts := range []testmodel.Options{
		{FailureRate: 1.5}, {FailureRate: -0.1}, {Latency: -time.Second}, {LoadTime: -1}, {ResponseBytes: -1}, {Port: 70000}, {FailFirst: -1},
	} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		err = testmodel.Serve(context.Background(), ln, opts, nil)
		assert.Error(t, err, "%+v", opts)
	}
}

func TestHandler_WorksUnderHTTPTest(t *testing.T) {
	t.Parallel()
	h := testmodel.NewHandler(testmodel.Options{}, nil)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", "/predict", strings.NewReader(`[1]`)))
	assert.Equal(t, 200, rec.Code)
	assert.Contains(t, rec.Body.String(), `"output":[1]`)
	assert.Equal(t, testmodel.Stats{Requests: 1}, h.Stats())
}

func TestPredict_FailFirstFailsEachRequestIDThatManyTimes(t *testing.T) {
	t.Parallel()
	m := serve(t, testmodel.Options{FailFirst: 2})
	statuses := func(id string, n int) []int {
		var out []int
		for range n {
			out = append(out, do(t, "POST", m.url+"/predict", `{}`, "X-Request-Id", id).status)
		}
		return out
	}
	assert.Equal(t, []int{500, 500, 200, 200}, statuses("a", 4), "request a: two failures, then answers")
	assert.Equal(t, []int{500, 500, 200}, statuses("b", 3), "request b counts on its own")
	assert.Equal(t, 200, do(t, "POST", m.url+"/predict", `{}`).status, "no request ID: never failed")

	var calls map[string]int
	require.NoError(t, json.Unmarshal(do(t, "GET", m.url+"/calls", "").body, &calls))
	assert.Equal(t, map[string]int{"a": 4, "b": 3}, calls, "GET /calls counts predictions per request ID")
}
