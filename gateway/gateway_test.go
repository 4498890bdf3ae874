package gateway_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "gateway", true, &dbURL)) }

// fixture is a gateway on a test database with one workspace, model and key.
type fixture struct {
	t     testing.TB
	db    *sqlx.DB
	gw    *gateway.Gateway
	reg   *prometheus.Registry
	url   string
	key   string
	model store.Model
}

func newFixture(t testing.TB, opts gateway.Options) *fixture {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ws, _, err := store.EnsureWorkspace(ctx, db, "gw-"+modelplane.NewID(6))
	require.NoError(t, err)
	m, err := store.CreateModel(ctx, db, ws.ID, "echo")
	require.NoError(t, err)
	_, key, err := apikey.Create(ctx, db, ws.ID, "test", false)
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	opts.DB, opts.DatabaseURL, opts.Registerer = db, dbURL, reg
	if opts.ID == "" {
		opts.ID = "test-" + modelplane.NewID(6)
	}
	if opts.ReportEvery == 0 {
		opts.ReportEvery = 100 * time.Millisecond
	}
	gw, err := gateway.New(opts)
	require.NoError(t, err)
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- gw.Run(runCtx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	srv := httptest.NewServer(gw.Handler(nil))
	t.Cleanup(srv.Close)
	require.Eventually(t, gw.Ready, 5*time.Second, 10*time.Millisecond, "the gateway never loaded its routes")
	return &fixture{t: t, db: db, gw: gw, reg: reg, url: srv.URL, key: key, model: m}
}

// server is a test model server that names itself in every answer.
type server struct {
	*httptest.Server
	h    *testmodel.Handler
	name string
	hits atomic.Int64
}

func (s *server) addr() string { return strings.TrimPrefix(s.URL, "http://") }

func newServer(t testing.TB, name string, opts testmodel.Options) *server {
	t.Helper()
	s := &server{h: testmodel.NewHandler(opts, nil), name: name}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == gateway.DefaultPredictPath {
			s.hits.Add(1)
		}
		w.Header().Set("X-Server", name)
		s.h.ServeHTTP(w, r)
	}))
	t.Cleanup(s.Close)
	return s
}

// deployment makes an ACTIVE deployment with a READY replica at each address.
func (f *fixture) deployment(name string, dev bool, addrs ...string) store.Deployment {
	f.t.Helper()
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{
		ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID, Name: name, IsDevelopment: dev,
	})
	require.NoError(f.t, err)
	require.NoError(f.t, store.SetDeploymentStatus(ctx, f.db, d.ID, "ACTIVE", ""))
	for _, a := range addrs {
		f.replica(d.ID, a)
	}
	return d
}

func (f *fixture) replica(deploymentID, addr string) string {
	f.t.Helper()
	ctx := context.Background()
	r, _, err := store.CreateReplica(ctx, f.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: deploymentID})
	require.NoError(f.t, err)
	require.NoError(f.t, store.SetReplicaState(ctx, f.db, r.ID, modelplane.ReplicaReady, addr, ""))
	return r.ID
}

func (f *fixture) point(env, deploymentID string) {
	f.t.Helper()
	require.NoError(f.t, store.SetEnvironmentDeployment(context.Background(), f.db, f.model.ID, env, deploymentID))
}

func (f *fixture) request(method, path string, body io.Reader, header ...string) *http.Request {
	f.t.Helper()
	req, err := http.NewRequest(method, f.url+path, body)
	require.NoError(f.t, err)
	req.Header.Set("Authorization", "Api-Key "+f.key)
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	return req
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (f *fixture) do(req *http.Request) answer {
	f.t.Helper()
	res, err := http.DefaultClient.Do(req)
	require.NoError(f.t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(f.t, err)
	return answer{res.StatusCode, res.Header, string(b)}
}

func (f *fixture) predict(target, body string) answer {
	f.t.Helper()
	return f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/"+target+"/predict", strings.NewReader(body)))
}

// eventually waits until the gateway answers target with status, as it does within 100 ms
// of the change that makes it so.
func (f *fixture) eventually(target string, status int) answer {
	f.t.Helper()
	var a answer
	require.Eventually(f.t, func() bool {
		a = f.predict(target, `{}`)
		return a.status == status
	}, 2*time.Second, 5*time.Millisecond, "%s never answered %d; last answer %d %s", target, status, a.status, a.body)
	return a
}

func errorMessage(t *testing.T, a answer) string {
	t.Helper()
	var e struct {
		Error struct{ Code, Message string }
	}
	require.NoError(t, json.Unmarshal([]byte(a.body), &e), "error body %q", a.body)
	require.NotEmpty(t, e.Error.Code)
	return e.Error.Message
}

func TestEveryTargetAnswers(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	prod, staging, dev, other := newServer(t, "prod", testmodel.Options{}), newServer(t, "staging", testmodel.Options{}),
		newServer(t, "dev", testmodel.Options{}), newServer(t, "other", testmodel.Options{})
	p := f.deployment("", false, prod.addr())
	f.point(modelplane.ProductionEnvironment, p.ID)
	s := f.deployment("", false, staging.addr())
	_, err := store.CreateEnvironment(context.Background(), f.db, store.Environment{ModelID: f.model.ID, Name: "staging"})
	require.NoError(t, err)
	f.point("staging", s.ID)
	f.deployment("", true, dev.addr())
	o := f.deployment("", false, other.addr())

	for target, want := range map[string]string{
		"production":              "prod",
		"environments/production": "prod",
		"environments/staging":    "staging",
		"development":             "dev",
		"deployment/" + o.ID:      "other",
		"deployment/" + p.ID:      "prod",
	} {
		a := f.eventually(target, http.StatusOK)
		assert.Equal(t, want, a.header.Get("X-Server"), target)
		assert.Contains(t, a.body, `"output":{}`, "the model's answer comes back as it is")
		assert.NotEmpty(t, a.header.Get("X-Request-Id"))
	}

	t.Run("by host", func(t *testing.T) {
		req := f.request(http.MethodPost, "/environments/staging/predict", strings.NewReader(`{"x":1}`))
		req.Host = "model-" + f.model.ID + ".inference.example.com"
		a := f.do(req)
		require.Equal(t, http.StatusOK, a.status, a.body)
		assert.Equal(t, "staging", a.header.Get("X-Server"))
		assert.Contains(t, a.body, `"output":{"x":1}`)
	})
}

func TestForwarding(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	var seen atomic.Value
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		seen.Store(map[string]string{"auth": r.Header.Get("Authorization"), "xff": r.Header.Get("X-Forwarded-For"),
			"te": strings.Join(r.TransferEncoding, ","), "query": r.URL.RawQuery, "body": string(b),
			"id": r.Header.Get("X-Request-Id"), "custom": r.Header.Get("X-Custom"), "hop": r.Header.Get("X-Custom-Hop")})
		w.Header().Set("X-From-Model", "yes")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "short and stout")
	}))
	t.Cleanup(up.Close)
	d := f.deployment("", false, strings.TrimPrefix(up.URL, "http://"))
	require.Eventually(t, func() bool { return len(f.gw.Routable(f.model.ID, d.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)
	path := "/models/" + f.model.ID + "/deployment/" + d.ID + "/predict?verbose=1"

	req := f.request(http.MethodPost, path, strings.NewReader(`{"x":1}`),
		"X-Request-Id", "abc-123", "X-Custom", "kept", "Connection", "X-Custom-Hop", "X-Custom-Hop", "dropped")
	a := f.do(req)
	require.Equal(t, http.StatusTeapot, a.status, "the model's status comes back as it is")
	assert.Equal(t, "short and stout", a.body)
	assert.Equal(t, "yes", a.header.Get("X-From-Model"))
	assert.Equal(t, "abc-123", a.header.Get("X-Request-Id"), "the client's request ID is kept")
	got := seen.Load().(map[string]string)
	assert.Equal(t, map[string]string{"auth": "", "xff": "127.0.0.1", "te": "", "query": "verbose=1", "body": `{"x":1}`,
		"id": "abc-123", "custom": "kept", "hop": ""}, got,
		"the model sees the body, query and end-to-end headers, not the API key or hop-by-hop headers")

	// A body of unknown length goes through chunked.
	req = f.request(http.MethodPost, path, io.MultiReader(strings.NewReader(`{"chunked":`), strings.NewReader(`true}`)))
	req.ContentLength = -1
	a = f.do(req)
	require.Equal(t, http.StatusTeapot, a.status)
	got = seen.Load().(map[string]string)
	assert.Equal(t, `{"chunked":true}`, got["body"])
	assert.Equal(t, "chunked", got["te"])
	assert.Len(t, got["id"], 32, "a request without an ID gets one")
}

// TestClosedIdleConnectionIsReplaced: a model server that closes a keep-alive connection while
// it sits in the gateway's pool costs the next request nothing.
func TestClosedIdleConnectionIsReplaced(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { ln.Close() })
	var served atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				// One answer per connection, then close it while the gateway keeps it idle.
				req, err := http.ReadRequest(bufio.NewReader(c))
				if err != nil {
					return
				}
				_, _ = io.Copy(io.Discard, req.Body)
				served.Add(1)
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				time.Sleep(20 * time.Millisecond)
			}()
		}
	}()
	d := f.deployment("", false, ln.Addr().String())
	f.point(modelplane.ProductionEnvironment, d.ID)
	f.eventually("production", http.StatusOK)
	for i := range 5 {
		time.Sleep(50 * time.Millisecond) // the server has closed the pooled connection by now
		a := f.predict("production", `{"i":1}`)
		require.Equal(t, http.StatusOK, a.status, "request %d: %s", i, a.body)
	}
	assert.EqualValues(t, 6, served.Load(), "each request reached the model once")
}

func TestStatuses(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxBodyBytes: 1024, UpstreamTimeout: 300 * time.Millisecond})
	ok := newServer(t, "ok", testmodel.Options{})
	slow := newServer(t, "slow", testmodel.Options{Latency: 5 * time.Second})
	d := f.deployment("", false, ok.addr())
	f.point(modelplane.ProductionEnvironment, d.ID)
	f.eventually("production", http.StatusOK)
	ctx := context.Background()

	notFound := func(t *testing.T, a answer, want string) {
		t.Helper()
		require.Equal(t, http.StatusNotFound, a.status, a.body)
		assert.Contains(t, errorMessage(t, a), want)
	}
	t.Run("unknown model", func(t *testing.T) {
		a := f.do(f.request(http.MethodPost, "/models/zzzzzzzz/production/predict", strings.NewReader("{}")))
		notFound(t, a, "model zzzzzzzz not found")
	})
	t.Run("another workspace's model", func(t *testing.T) {
		ws, _, err := store.EnsureWorkspace(ctx, f.db, "gw-other-"+modelplane.NewID(4))
		require.NoError(t, err)
		_, otherKey, err := apikey.Create(ctx, f.db, ws.ID, "other", false)
		require.NoError(t, err)
		req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", strings.NewReader("{}"))
		req.Header.Set("Authorization", "Bearer "+otherKey)
		notFound(t, f.do(req), "model "+f.model.ID+" not found")
	})
	t.Run("unknown environment", func(t *testing.T) { notFound(t, f.predict("environments/nope", "{}"), "has no environment nope") })
	t.Run("unknown deployment", func(t *testing.T) { notFound(t, f.predict("deployment/yyyyyyyy", "{}"), "has no deployment yyyyyyyy") })
	t.Run("no development deployment", func(t *testing.T) { notFound(t, f.predict("development", "{}"), "no development deployment") })
	t.Run("environment without deployment", func(t *testing.T) {
		_, err := store.CreateEnvironment(ctx, f.db, store.Environment{ModelID: f.model.ID, Name: "empty"})
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			return strings.Contains(f.predict("environments/empty", "{}").body, "has no deployment: promote one to it")
		}, 2*time.Second, 5*time.Millisecond)
	})
	t.Run("unknown path", func(t *testing.T) {
		notFound(t, f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/nowhere", nil)), "no inference route")
		notFound(t, f.predict("deployment/"+d.ID+"/extra", "{}"), "no inference route")
	})
	t.Run("wrong method", func(t *testing.T) {
		a := f.do(f.request(http.MethodGet, "/models/"+f.model.ID+"/production/predict", nil))
		require.Equal(t, http.StatusMethodNotAllowed, a.status)
		assert.Equal(t, "POST", a.header.Get("Allow"))
	})
	t.Run("keys", func(t *testing.T) {
		req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", nil)
		req.Header.Del("Authorization")
		a := f.do(req)
		require.Equal(t, http.StatusUnauthorized, a.status)
		assert.Contains(t, errorMessage(t, a), "missing API key")
		req.Header.Set("Authorization", "Api-Key mp_000000000000_00000000000000000000000000000000")
		assert.Contains(t, errorMessage(t, f.do(req)), "invalid API key")
		req.Header.Set("Authorization", "Basic xyz")
		assert.Contains(t, errorMessage(t, f.do(req)), "unsupported Authorization scheme")

		k, text, err := apikey.Create(ctx, f.db, f.model.WorkspaceID, "soon revoked", false)
		require.NoError(t, err)
		req.Header.Set("Authorization", "Api-Key "+text)
		require.Equal(t, http.StatusOK, f.do(req.Clone(ctx)).status, "a valid key is cached now")
		require.NoError(t, store.RevokeAPIKey(ctx, f.db, k.ID))
		require.Eventually(t, func() bool { return f.do(req.Clone(ctx)).status == http.StatusUnauthorized },
			time.Second, 5*time.Millisecond, "a revoked key must stop working at once, cache or not")
		assert.Contains(t, errorMessage(t, f.do(req.Clone(ctx))), "revoked")
	})
	t.Run("body too large", func(t *testing.T) {
		big := `{"x":"` + strings.Repeat("a", 2000) + `"}`
		a := f.predict("production", big)
		require.Equal(t, http.StatusRequestEntityTooLarge, a.status, a.body)
		assert.Contains(t, errorMessage(t, a), "1024 bytes")
		// Without a Content-Length the limit is found while the body streams through.
		req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", io.MultiReader(strings.NewReader(big)))
		req.ContentLength = -1
		a = f.do(req)
		require.Equal(t, http.StatusRequestEntityTooLarge, a.status, a.body)
	})
	t.Run("upstream timeout", func(t *testing.T) {
		sd := f.deployment("", false, slow.addr())
		start := time.Now()
		a := f.eventually("deployment/"+sd.ID, http.StatusGatewayTimeout)
		assert.Less(t, time.Since(start), 3*time.Second)
		assert.Contains(t, errorMessage(t, a), "did not answer within 300ms")
	})
	t.Run("no ready replica", func(t *testing.T) {
		nd := f.deployment("", false)
		require.NoError(t, store.SetDeploymentStatus(ctx, f.db, nd.ID, "LOADING_MODEL", ""))
		var a answer
		require.Eventually(t, func() bool {
			a = f.predict("deployment/"+nd.ID, "{}")
			return strings.Contains(a.body, "LOADING_MODEL")
		}, 2*time.Second, 5*time.Millisecond)
		require.Equal(t, http.StatusServiceUnavailable, a.status)
		assert.Equal(t, "2", a.header.Get("Retry-After"))
		assert.Contains(t, errorMessage(t, a), "has no ready replica (status LOADING_MODEL)")
	})
	t.Run("deactivated answers 404 at once", func(t *testing.T) {
		dd := f.deployment("", false, ok.addr())
		f.eventually("deployment/"+dd.ID, http.StatusOK)
		require.NoError(t, store.SetDeploymentStatus(ctx, f.db, dd.ID, "INACTIVE", ""))
		start := time.Now()
		a := f.eventually("deployment/"+dd.ID, http.StatusNotFound)
		assert.Less(t, time.Since(start), 500*time.Millisecond)
		assert.Contains(t, errorMessage(t, a), "is deactivated")
	})
	t.Run("deleted answers 404", func(t *testing.T) {
		dd := f.deployment("", false, ok.addr())
		f.eventually("deployment/"+dd.ID, http.StatusOK)
		require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, f.model.ID, dd.ID))
		a := f.eventually("deployment/"+dd.ID, http.StatusNotFound)
		assert.Contains(t, errorMessage(t, a), "was deleted")
	})
}

// TestRoutesFollowNotifications measures how long a committed change takes to reach the
// routing table.
func TestRoutesFollowNotifications(t *testing.T) {
	f := newFixture(t, gateway.Options{ReloadEvery: time.Hour}) // only notifications can explain a change
	a, b := newServer(t, "a", testmodel.Options{}), newServer(t, "b", testmodel.Options{})
	da, db := f.deployment("", false, a.addr()), f.deployment("", false, b.addr())
	f.point(modelplane.ProductionEnvironment, da.ID)
	f.eventually("production", http.StatusOK)

	const changes = 20
	var slow []time.Duration
	for i := range changes {
		want, server := da, "a"
		if i%2 == 0 {
			want, server = db, "b"
		}
		f.point(modelplane.ProductionEnvironment, want.ID)
		committed := time.Now()
		for f.gw.RoutesTo(f.model.ID, modelplane.ProductionEnvironment) != want.ID {
			require.Less(t, time.Since(committed), 2*time.Second, "change %d never arrived", i)
			time.Sleep(time.Millisecond)
		}
		if d := time.Since(committed); d > 100*time.Millisecond {
			slow = append(slow, d)
		}
		got := f.predict("production", "{}")
		require.Equal(t, server, got.header.Get("X-Server"))
	}
	// A loaded two-core CI machine may stall once; more than that is a real delay.
	assert.LessOrEqual(t, len(slow), 1, "changes seen later than 100 ms: %v", slow)
}

func TestWeightedSplit(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	cur, cand := newServer(t, "current", testmodel.Options{}), newServer(t, "candidate", testmodel.Options{})
	dc, dn := f.deployment("", false, cur.addr()), f.deployment("", false, cand.addr())
	f.point(modelplane.ProductionEnvironment, dc.ID)
	ctx := context.Background()
	p, err := store.CreatePromotion(ctx, f.db, store.NewPromotion{ID: modelplane.NewID(8), ModelID: f.model.ID,
		Environment: modelplane.ProductionEnvironment, SourceDeploymentID: dn.ID, PreviousDeploymentID: &dc.ID, WorkflowID: "test"})
	require.NoError(t, err)
	require.NoError(t, store.SetPromotionCandidate(ctx, f.db, p.ID, dn.ID))
	require.NoError(t, store.SetPromotionStatus(ctx, f.db, p.ID, modelplane.PromotionRampingUp, 30, "", false))
	require.Eventually(t, func() bool { return f.gw.Weight(f.model.ID, modelplane.ProductionEnvironment, dn.ID) == 30 },
		2*time.Second, time.Millisecond)
	cur.hits.Store(0)
	cand.hits.Store(0)

	const total = 10000
	var wg sync.WaitGroup
	var failed atomic.Int64
	next := atomic.Int64{}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for next.Add(1) <= total {
				req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", strings.NewReader("{}"))
				res, err := client.Do(req)
				if err != nil {
					failed.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != http.StatusOK {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	require.Zero(t, failed.Load())
	share := float64(cand.hits.Load()) / total * 100
	assert.EqualValues(t, total, cur.hits.Load()+cand.hits.Load())
	assert.InDelta(t, 30, share, 3, "candidate share %.1f%% of %d requests", share, total)
	phase := metricLabels(t, f, "modelplane_inference_requests_total", dn.ID)
	assert.Equal(t, "promoting", phase["rollout_phase"])
	assert.Equal(t, "production", phase["environment"])
}

func TestRefusingReplicaIsSkipped(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	up := newServer(t, "up", testmodel.Options{})
	// A port nothing listens on: connecting is refused.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	dead := ln.Addr().String()
	require.NoError(t, ln.Close())
	d := f.deployment("", false, up.addr(), dead)
	f.point(modelplane.ProductionEnvironment, d.ID)
	f.eventually("production", http.StatusOK)

	const n = 200
	for i := range n {
		a := f.predict("production", `{"i":1}`)
		require.Equal(t, http.StatusOK, a.status, "request %d: %s", i, a.body)
	}
	// Every request is counted once, retried or not.
	got := requests(t, f, d.ID, "200")
	assert.GreaterOrEqual(t, got, float64(n))
	assert.EqualValues(t, up.hits.Load(), int64(got), "one count per request, none for the failed connection")
}

// series returns the first series of the metric whose labels include want.
func series(t *testing.T, f *fixture, name string, want map[string]string) (*dto.Metric, map[string]string) {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			labels := map[string]string{}
			for _, l := range m.GetLabel() {
				labels[l.GetName()] = l.GetValue()
			}
			for k, v := range want {
				if labels[k] != v {
					continue next
				}
			}
			return m, labels
		}
	}
	t.Fatalf("no %s series with %v", name, want)
	return nil, nil
}

// metricLabels returns the labels of the metric's series for the deployment.
func metricLabels(t *testing.T, f *fixture, name, deploymentID string) map[string]string {
	t.Helper()
	_, labels := series(t, f, name, map[string]string{"deployment_id": deploymentID})
	return labels
}

// gauge returns the value of the deployment's gauge.
func gauge(t *testing.T, f *fixture, name, deploymentID string) float64 {
	t.Helper()
	m, _ := series(t, f, name, map[string]string{"deployment_id": deploymentID})
	return m.GetGauge().GetValue()
}

// requests returns how many requests the deployment answered with code.
func requests(t *testing.T, f *fixture, deploymentID, code string) float64 {
	t.Helper()
	m, _ := series(t, f, "modelplane_inference_requests_total", map[string]string{"deployment_id": deploymentID, "status_code": code})
	return m.GetCounter().GetValue()
}

func TestStreamingIsNotBuffered(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	s := newServer(t, "stream", testmodel.Options{Latency: 1500 * time.Millisecond})
	d := f.deployment("", false, s.addr())
	f.point(modelplane.ProductionEnvironment, d.ID)
	f.eventually("production", http.StatusOK)

	req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", strings.NewReader("{}"),
		"Accept", "text/event-stream")
	start := time.Now()
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	require.Equal(t, "text/event-stream", res.Header.Get("Content-Type"))
	r := bufio.NewReader(res.Body)
	first, err := r.ReadString('\n')
	require.NoError(t, err)
	firstAt := time.Since(start)
	assert.Equal(t, "data: 1\n", first)
	rest, err := io.ReadAll(r)
	require.NoError(t, err)
	total := time.Since(start)
	assert.Contains(t, string(rest), fmt.Sprintf("data: %d", testmodel.StreamEvents))
	assert.Less(t, firstAt, total/2, "the first event (at %s) must arrive long before the end (%s)", firstAt, total)
}

func TestClientCancelReachesModelServer(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	s := newServer(t, "slow", testmodel.Options{Latency: 10 * time.Second})
	d := f.deployment("", false, s.addr())
	f.point(modelplane.ProductionEnvironment, d.ID)
	require.Eventually(t, func() bool { return f.gw.RoutesTo(f.model.ID, modelplane.ProductionEnvironment) == d.ID }, 2*time.Second, 5*time.Millisecond)

	ctx, cancel := context.WithCancel(context.Background())
	req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", strings.NewReader("{}")).WithContext(ctx)
	errc := make(chan error, 1)
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err == nil {
			res.Body.Close()
		}
		errc <- err
	}()
	require.Eventually(t, func() bool { return s.h.Stats().InFlight == 1 }, 2*time.Second, 5*time.Millisecond)
	cancel()
	require.Error(t, <-errc)
	require.Eventually(t, func() bool { return s.h.Stats().InFlight == 0 }, time.Second, 5*time.Millisecond,
		"the model server must see the client leave")
	assert.EqualValues(t, 1, s.h.Stats().Requests)
}

func TestLoadSamplesAndDrain(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	ctx := context.Background()
	slow := newServer(t, "slow", testmodel.Options{Latency: 1500 * time.Millisecond})
	other := newServer(t, "other", testmodel.Options{})
	d := f.deployment("", false, slow.addr())
	f.point(modelplane.ProductionEnvironment, d.ID)
	var rep store.Replica
	reps, err := store.ListLiveReplicas(ctx, f.db, d.ID)
	require.NoError(t, err)
	rep = reps[0]
	require.Eventually(t, func() bool { return f.gw.RoutesTo(f.model.ID, modelplane.ProductionEnvironment) == d.ID }, 2*time.Second, 5*time.Millisecond)

	// Four requests in flight for 1.5 s: the samples say about four, the report names them.
	var wg sync.WaitGroup
	statuses := make(chan int, 5)
	for range 4 {
		wg.Add(1)
		go func() { defer wg.Done(); statuses <- f.predict("production", "{}").status }()
	}
	require.Eventually(t, func() bool { return slow.h.Stats().InFlight == 4 }, 2*time.Second, 5*time.Millisecond)
	assert.Equal(t, 4.0, gauge(t, f, "modelplane_concurrent_requests", d.ID))
	assert.Equal(t, 1.0, gauge(t, f, "modelplane_replicas_active", d.ID))
	assert.Equal(t, 0.0, gauge(t, f, "modelplane_replicas_starting", d.ID))
	assert.Equal(t, 100.0, gauge(t, f, "modelplane_environment_traffic_weight", d.ID), "production sends all its traffic to the deployment")

	// Drain the replica while they run: a second replica takes new requests, the old one
	// counts as drained only once its four requests are done.
	f.replica(d.ID, other.addr())
	drained, err := store.MarkReplicaDraining(ctx, f.db, rep.ID)
	require.NoError(t, err)
	require.True(t, drained)
	require.Eventually(t, func() bool {
		r := f.gw.Routable(f.model.ID, d.ID)
		return len(r) == 1 && r[0] == other.addr()
	}, time.Second, 5*time.Millisecond, "the draining replica must leave the routes")
	for range 20 {
		require.Equal(t, "other", f.predict("production", "{}").header.Get("X-Server"), "a draining replica takes no new request")
	}
	ok, err := store.ReplicaDrained(ctx, f.db, rep.ID)
	require.NoError(t, err)
	assert.False(t, ok, "four requests are still in flight on the draining replica")
	wg.Wait()
	close(statuses)
	for s := range statuses {
		assert.Equal(t, http.StatusOK, s, "requests in flight on a draining replica complete")
	}
	require.Eventually(t, func() bool {
		ok, err := store.ReplicaDrained(ctx, f.db, rep.ID)
		return err == nil && ok
	}, 2*time.Second, 20*time.Millisecond, "the replica is drained once its requests ended")

	var peak float64
	require.NoError(t, f.db.GetContext(ctx, &peak,
		`SELECT COALESCE(max(concurrency), 0) FROM load_samples WHERE deployment_id = $1 AND gateway_id = $2`, d.ID, f.gw.ID()))
	assert.InDelta(t, 4, peak, 1.2, "average concurrency per sample while four requests ran")
	var requests int
	require.NoError(t, f.db.GetContext(ctx, &requests,
		`SELECT COALESCE(sum(requests), 0) FROM load_samples WHERE deployment_id = $1`, d.ID))
	assert.GreaterOrEqual(t, requests, 4)
}

func TestReadiness(t *testing.T) {
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	gw, err := gateway.New(gateway.Options{DB: db, DatabaseURL: dbURL})
	require.NoError(t, err)
	srv := httptest.NewServer(gw.Handler(nil))
	t.Cleanup(srv.Close)
	get := func(path string) int {
		res, err := http.Get(srv.URL + path)
		require.NoError(t, err)
		res.Body.Close()
		return res.StatusCode
	}
	require.Equal(t, http.StatusServiceUnavailable, get("/readyz"), "not ready before the first load")
	require.Equal(t, http.StatusOK, get("/healthz"))
	res, err := http.Post(srv.URL+"/models/abcdefgh/production/predict", "application/json", bytes.NewReader(nil))
	require.NoError(t, err)
	res.Body.Close()
	require.Equal(t, http.StatusServiceUnavailable, res.StatusCode)

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- gw.Run(ctx) }()
	require.Eventually(t, func() bool { return get("/readyz") == http.StatusOK }, 5*time.Second, 10*time.Millisecond)
	cancel()
	require.NoError(t, <-done)
}

// BenchmarkPredict measures predictions through the gateway to an in-process model server,
// with the same clients sending directly as the baseline. bench/gateway compares the gateway
// with nginx across processes.
func BenchmarkPredict(b *testing.B) {
	f := newFixture(b, gateway.Options{})
	s := newServer(b, "bench", testmodel.Options{})
	d := f.deployment("", false, s.addr())
	f.point(modelplane.ProductionEnvironment, d.ID)
	f.eventually("production", http.StatusOK)
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	run := func(b *testing.B, url string) {
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				req, _ := http.NewRequest(http.MethodPost, url, strings.NewReader(`{"x":1}`))
				req.Header.Set("Authorization", "Api-Key "+f.key)
				res, err := client.Do(req)
				if err != nil {
					b.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, res.Body)
				res.Body.Close()
			}
		})
	}
	b.Run("direct", func(b *testing.B) { run(b, s.URL+gateway.DefaultPredictPath) })
	b.Run("gateway", func(b *testing.B) { run(b, f.url+"/models/"+f.model.ID+"/production/predict") })
}

func TestCanaryFigures(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	ctx := context.Background()
	flaky := newServer(t, "flaky", testmodel.Options{FailureRate: 0.5})
	d := f.deployment("", false, flaky.addr())
	f.point(modelplane.ProductionEnvironment, d.ID)
	require.Eventually(t, func() bool { return f.gw.RoutesTo(f.model.ID, modelplane.ProductionEnvironment) == d.ID }, 2*time.Second, 5*time.Millisecond)

	statuses := map[int]int{}
	for range 200 {
		statuses[f.predict("production", "{}").status]++
	}
	require.Equal(t, 200, statuses[http.StatusOK]+statuses[http.StatusInternalServerError], "answers: %v", statuses)

	// Samples are written once a second, for the second that ended.
	var fig modelplane.Figures
	require.Eventually(t, func() bool {
		now := time.Now()
		var err error
		fig, err = store.DeploymentFigures(ctx, f.db, d.ID, now.Add(-time.Minute), now)
		return err == nil && fig.Completed >= 200
	}, 5*time.Second, 50*time.Millisecond, "figures never counted the 200 requests: %+v", fig)
	assert.Equal(t, 200, fig.Completed)
	assert.Equal(t, statuses[http.StatusInternalServerError], fig.Errors, "every 500 answered counts as an error")
	assert.InDelta(t, 100, fig.Errors, 30, "about half the requests fail")
	assert.InDelta(t, float64(fig.Errors)/200, fig.ErrorRate(), 1e-12)
	assert.Greater(t, fig.P99, time.Duration(0))
	assert.LessOrEqual(t, fig.P99, 5*time.Second, "a local test model answers at once")
}
