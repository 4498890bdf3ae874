package gateway_test

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
)

// seen is what the passthrough server was sent.
type seen struct {
	Method, Path, Query, Body string
	Header                    http.Header
}

// passthroughServer is a model server with an OpenAI-like path that answers what it was sent,
// an event stream that sends its second event only once release is closed, and a websocket
// that echoes every message prefixed with its name.
func passthroughServer(t *testing.T, name string, release <-chan struct{}) *httptest.Server {
	t.Helper()
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case gateway.WebsocketPath:
			c, err := websocket.Accept(w, r, nil)
			if err != nil {
				return
			}
			defer c.CloseNow()
			c.SetReadLimit(1 << 20)
			for {
				typ, msg, err := c.Read(r.Context())
				if err != nil || string(msg) == "vanish" {
					return // CloseNow: the connection ends without a close frame
				}
				if err := c.Write(r.Context(), typ, append([]byte(name+":"), msg...)); err != nil {
					return
				}
			}
		case "/v1/events":
			w.Header().Set("Content-Type", "text/event-stream")
			_, _ = io.WriteString(w, "data: one\n\n")
			w.(http.Flusher).Flush()
			<-release
			_, _ = io.WriteString(w, "data: two\n\n")
		default:
			b, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			w.Header().Set("X-Server", name)
			_ = json.NewEncoder(w).Encode(seen{r.Method, r.URL.EscapedPath(), r.URL.RawQuery, string(b), r.Header})
		}
	}))
	t.Cleanup(s.Close)
	return s
}

func hostOf(s *httptest.Server) string { return strings.TrimPrefix(s.URL, "http://") }

// passthroughFixture serves one model whose four targets all reach the passthrough server:
// production, environments/production and deployment/{id} the promoted deployment, development
// a development deployment on the same server.
func passthroughFixture(t *testing.T, opts gateway.Options, release <-chan struct{}) (*fixture, []string, store.Deployment) {
	f := newFixture(t, opts)
	s := passthroughServer(t, "model", release)
	d := f.deployment("v1", false, hostOf(s))
	f.deployment("dev", true, hostOf(s))
	f.point("production", d.ID)
	targets := []string{"production", "environments/production", "development", "deployment/" + d.ID}
	for _, target := range targets {
		f.eventually(target, http.StatusOK)
	}
	return f, targets, d
}

func TestSync_PassesMethodPathQueryBodyAndHeadersThrough(t *testing.T) {
	f, targets, _ := passthroughFixture(t, gateway.Options{}, nil)
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			req := f.request(http.MethodPut, "/models/"+f.model.ID+"/"+target+"/sync/v1/chat/completions/a%2Fb?stream=false&q=a%20b",
				strings.NewReader(`{"model":"m"}`), "X-Custom", "kept", "Connection", "X-Hop", "X-Hop", "dropped")
			a := f.do(req)
			require.Equal(t, http.StatusOK, a.status, a.body)
			assert.Equal(t, "model", a.header.Get("X-Server"), "the model server's headers come back")
			var got seen
			require.NoError(t, json.Unmarshal([]byte(a.body), &got), a.body)
			assert.Equal(t, http.MethodPut, got.Method)
			assert.Equal(t, "/v1/chat/completions/a%2Fb", got.Path, "the path after /sync goes through as sent")
			assert.Equal(t, "stream=false&q=a%20b", got.Query)
			assert.Equal(t, `{"model":"m"}`, got.Body)
			assert.Equal(t, "kept", got.Header.Get("X-Custom"))
			assert.Empty(t, got.Header.Get("X-Hop"), "a header the Connection header names is hop-by-hop")
			assert.Empty(t, got.Header.Get("Authorization"), "the API key is not the model's to see")
		})
	}
	t.Run("GET without body, bare /sync", func(t *testing.T) {
		a := f.do(f.request(http.MethodGet, "/models/"+f.model.ID+"/production/sync", nil))
		require.Equal(t, http.StatusOK, a.status, a.body)
		var got seen
		require.NoError(t, json.Unmarshal([]byte(a.body), &got), a.body)
		assert.Equal(t, http.MethodGet, got.Method)
		assert.Equal(t, "/", got.Path)
		assert.Empty(t, got.Body)
	})
	t.Run("HEAD", func(t *testing.T) {
		a := f.do(f.request(http.MethodHead, "/models/"+f.model.ID+"/production/sync/v1/models", nil))
		assert.Equal(t, http.StatusOK, a.status)
		assert.Empty(t, a.body)
	})
	t.Run("large streamed body", func(t *testing.T) {
		big := strings.Repeat("x", 1<<20)
		pr, pw := io.Pipe()
		go func() { _, _ = io.WriteString(pw, big); pw.Close() }()
		a := f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/production/sync/upload", pr))
		require.Equal(t, http.StatusOK, a.status)
		var got seen
		require.NoError(t, json.Unmarshal([]byte(a.body), &got))
		assert.Equal(t, len(big), len(got.Body), "a body of unknown length arrives whole")
	})
}

func TestSync_StreamsEventsOneByOne(t *testing.T) {
	release := make(chan struct{})
	f, _, _ := passthroughFixture(t, gateway.Options{}, release)
	res, err := http.DefaultClient.Do(f.request(http.MethodGet, "/models/"+f.model.ID+"/environments/production/sync/v1/events", nil))
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	lines := make(chan string, 8)
	go func() {
		sc := bufio.NewScanner(res.Body)
		for sc.Scan() {
			if sc.Text() != "" {
				lines <- sc.Text()
			}
		}
		close(lines)
	}()
	select {
	case l := <-lines:
		assert.Equal(t, "data: one", l)
	case <-time.After(5 * time.Second):
		t.Fatal("the first event did not arrive while the model server held the second back")
	}
	close(release)
	select {
	case l := <-lines:
		assert.Equal(t, "data: two", l)
	case <-time.After(5 * time.Second):
		t.Fatal("the second event never arrived")
	}
}

func TestSync_RefusedWithoutKeyAndForUnknownTargets(t *testing.T) {
	f, _, _ := passthroughFixture(t, gateway.Options{}, nil)
	req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/sync/v1/chat/completions", strings.NewReader("{}"))
	req.Header.Del("Authorization")
	a := f.do(req)
	assert.Equal(t, http.StatusUnauthorized, a.status, a.body)
	assert.Contains(t, a.body, "missing API key")

	for _, path := range []string{
		"/models/" + f.model.ID + "/environments/nope/sync/v1/x",
		"/models/" + f.model.ID + "/deployment/zzzzzzzz/sync/v1/x",
		"/models/nosuchmodel/production/sync/v1/x",
	} {
		a := f.do(f.request(http.MethodGet, path, nil))
		assert.Equal(t, http.StatusNotFound, a.status, "%s: %s", path, a.body)
	}
}

// dial opens a websocket through the gateway with the fixture's key.
func (f *fixture) dial(t *testing.T, target string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	u := "ws" + strings.TrimPrefix(f.url, "http") + "/models/" + f.model.ID + "/" + target + "/websocket"
	c, res, err := websocket.Dial(ctx, u, &websocket.DialOptions{HTTPHeader: http.Header{"Authorization": {"Api-Key " + f.key}}})
	if c != nil {
		c.SetReadLimit(1 << 20)
		t.Cleanup(func() { c.CloseNow() })
	}
	return c, res, err
}

func echo(t *testing.T, c *websocket.Conn, typ websocket.MessageType, msg string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, typ, []byte(msg)))
	gotType, got, err := c.Read(ctx)
	require.NoError(t, err)
	assert.Equal(t, typ, gotType)
	return string(got)
}

func TestWebsocket_EchoesThroughEachTarget(t *testing.T) {
	f, targets, d := passthroughFixture(t, gateway.Options{}, nil)
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			c, _, err := f.dial(t, target)
			require.NoError(t, err)
			assert.Equal(t, "model:hello", echo(t, c, websocket.MessageText, "hello"))
			assert.Equal(t, "model:\x00\x01"+strings.Repeat("b", 70000), echo(t, c, websocket.MessageBinary, "\x00\x01"+strings.Repeat("b", 70000)))
			require.NoError(t, c.Close(websocket.StatusNormalClosure, "done"))
		})
	}
	require.Eventually(t, func() bool { return upgrades(t, f, d.ID) == 3 }, 2*time.Second, 10*time.Millisecond,
		"three websockets went to the promoted deployment, counted once each by status 101")
}

func TestWebsocket_RefusedWithoutKeyForUnknownTargetsAndWithoutUpgrade(t *testing.T) {
	f, _, _ := passthroughFixture(t, gateway.Options{}, nil)
	u := "ws" + strings.TrimPrefix(f.url, "http") + "/models/" + f.model.ID + "/production/websocket"
	_, res, err := websocket.Dial(context.Background(), u, nil)
	require.Error(t, err)
	require.NotNil(t, res)
	assert.Equal(t, http.StatusUnauthorized, res.StatusCode)

	_, res, err = f.dial(t, "environments/nope")
	require.Error(t, err)
	require.NotNil(t, res)
	assert.Equal(t, http.StatusNotFound, res.StatusCode)

	a := f.do(f.request(http.MethodGet, "/models/"+f.model.ID+"/production/websocket", nil))
	assert.Equal(t, http.StatusUpgradeRequired, a.status, a.body)
	a = f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/production/websocket", nil))
	assert.Equal(t, http.StatusMethodNotAllowed, a.status, a.body)
}

func TestWebsocket_ModelWithoutWebsocketAnswers404(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	s := newServer(t, "plain", testmodel.Options{})
	d := f.deployment("v1", false, s.addr())
	f.point("production", d.ID)
	f.eventually("production", http.StatusOK)
	_, res, err := f.dial(t, "production")
	require.Error(t, err)
	require.NotNil(t, res)
	assert.Equal(t, http.StatusNotFound, res.StatusCode, "the model server's refusal reaches the client")
}

func TestWebsocket_DrainedReplicaClosesWithGoingAway(t *testing.T) {
	f := newFixture(t, gateway.Options{WebsocketDrainTimeout: 700 * time.Millisecond})
	old := passthroughServer(t, "old", nil)
	next := passthroughServer(t, "new", nil)
	d := f.deployment("v1", false)
	oldRep := f.replica(d.ID, hostOf(old))
	f.point("production", d.ID)
	f.eventually("production", http.StatusOK)

	c, _, err := f.dial(t, "production")
	require.NoError(t, err)
	assert.Equal(t, "old:a", echo(t, c, websocket.MessageText, "a"))
	assert.Equal(t, 1.0, gauge(t, f, "modelplane_concurrent_requests", d.ID), "an open websocket counts as one request in flight")
	latencies := func() *dto.Histogram {
		m, _ := series(t, f, "modelplane_end_to_end_response_time_seconds", map[string]string{"deployment_id": d.ID})
		return m.GetHistogram()
	}
	before := latencies()

	// The old replica drains, a new one takes over.
	ctx := context.Background()
	f.replica(d.ID, hostOf(next))
	drained, err := store.MarkReplicaDraining(ctx, f.db, oldRep)
	require.NoError(t, err)
	require.True(t, drained)
	require.Eventually(t, func() bool {
		r := f.gw.Routable(f.model.ID, d.ID)
		return len(r) == 1 && r[0] == hostOf(next)
	}, 2*time.Second, 5*time.Millisecond, "the draining replica must leave the routes")

	n, _, err := f.dial(t, "production")
	require.NoError(t, err)
	assert.Equal(t, "new:b", echo(t, n, websocket.MessageText, "b"), "a new websocket goes to the replica that serves")
	assert.Equal(t, "old:c", echo(t, c, websocket.MessageText, "c"), "the open websocket keeps working while its replica drains")

	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	_, _, err = c.Read(rctx)
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "the drained websocket ends with a close frame, got %v", err)
	assert.Equal(t, websocket.StatusGoingAway, ce.Code)
	assert.Equal(t, "new:d", echo(t, n, websocket.MessageText, "d"), "the websocket on the serving replica stays open")

	// The closed websocket's latency is its handshake, not the second it stayed open.
	var after *dto.Histogram
	require.Eventually(t, func() bool {
		after = latencies()
		return after.GetSampleCount() == before.GetSampleCount()+1
	}, 2*time.Second, 10*time.Millisecond, "the closed websocket is observed once")
	assert.Less(t, after.GetSampleSum()-before.GetSampleSum(), 0.5, "latency of a websocket open for over 0.7 s")
}

// upgrades counts the deployment's requests answered 101, whatever the target they came by.
func upgrades(t *testing.T, f *fixture, deploymentID string) float64 {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	n := 0.0
	for _, mf := range mfs {
		if mf.GetName() != "modelplane_inference_requests_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			if labels["deployment_id"] == deploymentID && labels["status_code"] == "101" {
				n += m.GetCounter().GetValue()
			}
		}
	}
	return n
}

func TestWebsocket_ModelServerGoneClosesTheClientWithGoingAway(t *testing.T) {
	f, _, _ := passthroughFixture(t, gateway.Options{}, nil)
	c, _, err := f.dial(t, "production")
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("vanish")))
	_, _, err = c.Read(ctx)
	var ce websocket.CloseError
	require.True(t, errors.As(err, &ce), "a model server that drops the connection still ends in a close frame, got %v", err)
	assert.Equal(t, websocket.StatusGoingAway, ce.Code)
}

func TestWebsocket_ReachesTheWebsocketPathTheReplicaRecorded(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/v1/realtime" {
			http.NotFound(w, r)
			return
		}
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, append([]byte("realtime:"), msg...)); err != nil {
				return
			}
		}
	}))
	t.Cleanup(s.Close)
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID, Name: "ws"})
	require.NoError(t, err)
	require.NoError(t, store.SetDeploymentStatus(ctx, f.db, d.ID, "ACTIVE", ""))
	r, _, err := store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: d.ID})
	require.NoError(t, err)
	// A custom server with the websocket transport records its predict_endpoint.
	require.NoError(t, store.MarkReplicaReady(ctx, f.db, r.ID, hostOf(s), "/v1/realtime", "/v1/realtime"))
	f.point("production", d.ID)

	var c *websocket.Conn
	require.Eventually(t, func() bool {
		c, _, err = f.dial(t, "production")
		return err == nil
	}, 10*time.Second, 50*time.Millisecond, "no websocket: %v", err)
	defer c.CloseNow()
	assert.Equal(t, "realtime:hi", echo(t, c, websocket.MessageText, "hi"), "the upgrade reached the replica's websocket path")
	require.NoError(t, c.Close(websocket.StatusNormalClosure, "done"))
}

func TestSync_StreamSilentForTheStreamingReadTimeoutIsEnded(t *testing.T) {
	release := make(chan struct{})
	f := newFixture(t, gateway.Options{})
	s := passthroughServer(t, "model", release)
	t.Cleanup(func() { close(release) }) // before the server's Close, which waits for its handler
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID, Name: "v1",
		Config: store.JSONMap{"runtime": map[string]any{"streaming_read_timeout": 1}}})
	require.NoError(t, err)
	require.NoError(t, store.SetDeploymentStatus(ctx, f.db, d.ID, "ACTIVE", ""))
	f.replica(d.ID, hostOf(s))
	f.point("production", d.ID)
	f.eventually("production", http.StatusOK)

	start := time.Now()
	res, err := http.DefaultClient.Do(f.request(http.MethodGet, "/models/"+f.model.ID+"/production/sync/v1/events", nil))
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, http.StatusOK, res.StatusCode)
	sc := bufio.NewScanner(res.Body)
	require.True(t, sc.Scan())
	assert.Equal(t, "data: one", sc.Text())
	for sc.Scan() {
		assert.Empty(t, sc.Text(), "nothing follows while the model server is silent")
	}
	require.Error(t, sc.Err(), "the answer is cut short, not ended as if complete")
	elapsed := time.Since(start)
	assert.GreaterOrEqual(t, elapsed, time.Second, "silent for less than streaming_read_timeout is fine")
	assert.Less(t, elapsed, 5*time.Second, "silent for longer is ended")
}
