package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// replying is a model server that answers every prediction with the status and body it is
// set to, after waiting for gate (when not nil), and counts them.
type replying struct {
	*httptest.Server
	status atomic.Int64
	body   atomic.Value // string
	gate   atomic.Value // chan struct{}
	hits   atomic.Int64
}

func newReplying(t *testing.T, body string) *replying {
	t.Helper()
	s := &replying{}
	s.status.Store(http.StatusOK)
	s.body.Store(body)
	s.gate.Store((chan struct{})(nil))
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.hits.Add(1)
		if g := s.gate.Load().(chan struct{}); g != nil {
			select {
			case <-g:
			case <-r.Context().Done():
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(int(s.status.Load()))
		_, _ = w.Write([]byte(s.body.Load().(string)))
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *replying) addr() string { return strings.TrimPrefix(s.URL, "http://") }

// shadowFixture is a gateway whose production serves primary and copies to shadow.
type shadowFixture struct {
	*fixture
	primary, shadow *replying
	shadowID        string
}

func newShadowFixture(t *testing.T, opts gateway.Options, primaryBody, shadowBody string) *shadowFixture {
	t.Helper()
	f := newFixture(t, opts)
	sf := &shadowFixture{fixture: f, primary: newReplying(t, primaryBody), shadow: newReplying(t, shadowBody)}
	p := f.deployment("", false, sf.primary.addr())
	f.point(modelplane.ProductionEnvironment, p.ID)
	sf.shadowID = f.deployment("", false, sf.shadow.addr()).ID
	return sf
}

// set gives production these shadow settings and waits for the gateway to route by them.
func (f *shadowFixture) set(percent int, compare settings.ShadowCompare, tolerance float64) {
	f.t.Helper()
	id := f.shadowID
	require.NoError(f.t, store.UpdateEnvironmentShadow(context.Background(), f.db, f.model.ID, modelplane.ProductionEnvironment,
		settings.ShadowSettings{DeploymentID: &id, Percent: percent, Compare: compare, NumericTolerance: tolerance}))
	want := id
	if percent == 0 {
		want = ""
	}
	e, err := store.EnvironmentByName(context.Background(), f.db, f.model.ID, modelplane.ProductionEnvironment)
	require.NoError(f.t, err)
	require.Eventually(f.t, func() bool {
		got, at := f.gw.ShadowOf(f.model.ID, modelplane.ProductionEnvironment)
		return got == want && (want == "" || at.Equal(e.ShadowChangedAt)) &&
			f.gw.RoutesTo(f.model.ID, modelplane.ProductionEnvironment) != ""
	}, 2*time.Second, 5*time.Millisecond, "the gateway never took the shadow settings")
}

// figures sums production's shadow figures as the database has them.
func (f *shadowFixture) figures() store.ShadowFigures {
	f.t.Helper()
	ctx := context.Background()
	e, err := store.EnvironmentByName(ctx, f.db, f.model.ID, modelplane.ProductionEnvironment)
	require.NoError(f.t, err)
	s, err := store.SumShadowStats(ctx, f.db, f.model.ID, e.Name, e.ShadowChangedAt)
	require.NoError(f.t, err)
	return s
}

// awaitFigures waits until the written figures are want, latencies aside.
func (f *shadowFixture) awaitFigures(want store.ShadowFigures) store.ShadowFigures {
	f.t.Helper()
	var got store.ShadowFigures
	require.Eventually(f.t, func() bool {
		got = f.figures()
		got.PrimaryP99, got.ShadowP99 = 0, 0
		return got == want
	}, 5*time.Second, 20*time.Millisecond, "shadow figures never came to %+v", want)
	return f.figures()
}

func (f *shadowFixture) predictOK(n int) {
	f.t.Helper()
	for range n {
		a := f.predict("production", `{"x": 1}`)
		require.Equal(f.t, http.StatusOK, a.status, a.body)
		require.Equal(f.t, f.primary.body.Load().(string), a.body, "the caller gets the primary's answer")
	}
}

func TestShadow_CopiesThePercentOfRequests(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{}, `{"y": 1}`, `{"y": 1}`)

	f.set(100, settings.ShadowCompareJSON, 0)
	f.predictOK(20)
	got := f.awaitFigures(store.ShadowFigures{Copied: 20, Equal: 20})
	assert.Equal(t, int64(20), f.shadow.hits.Load(), "at 100 percent every request is copied")
	assert.Equal(t, 100.0, gauge(t, f.fixture, "modelplane_environment_shadow_percent", f.shadowID))
	m, _ := series(t, f.fixture, "modelplane_shadow_copies_total", map[string]string{"deployment_id": f.shadowID, "outcome": "equal"})
	assert.Equal(t, 20.0, m.GetCounter().GetValue(), "the metrics count the outcomes too")
	assert.Positive(t, got.PrimaryP99, "the compared pairs' latencies are counted")
	assert.Positive(t, got.ShadowP99)

	f.set(0, settings.ShadowCompareJSON, 0)
	f.predictOK(20)
	time.Sleep(300 * time.Millisecond) // a copy, had one been sent, would have arrived by now
	assert.Equal(t, int64(20), f.shadow.hits.Load(), "at 0 percent no request is copied")
	assert.Equal(t, store.ShadowFigures{}, f.figures(), "the figures start again when the settings change")

	f.set(50, settings.ShadowCompareJSON, 0)
	f.predictOK(40)
	require.Eventually(t, func() bool { return f.figures().Equal == f.figures().Copied && f.figures().Copied > 0 },
		5*time.Second, 20*time.Millisecond)
	copied := f.figures().Copied
	assert.InDelta(t, 20, copied, 6, "about half of 40 requests are copied at 50 percent")
	assert.Equal(t, 20+copied, f.shadow.hits.Load())
	assert.Equal(t, int64(80), f.primary.hits.Load(), "the primary answers every request once")
}

func TestShadow_SlowShadowDoesNotDelayTheCaller(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{}, `{"y": 1}`, `{"y": 1}`)
	gate := make(chan struct{})
	f.shadow.gate.Store(gate)
	time.AfterFunc(2*time.Second, func() { close(gate) })
	f.set(100, settings.ShadowCompareJSON, 0)

	start := time.Now()
	f.predictOK(5)
	assert.Less(t, time.Since(start), time.Second, "five answers while every copy waits 2 s at the shadow")
	require.Eventually(t, func() bool { return f.shadow.hits.Load() == 5 }, time.Second, 5*time.Millisecond)
	f.awaitFigures(store.ShadowFigures{Copied: 5, Equal: 5})
	assert.GreaterOrEqual(t, f.figures().ShadowP99, time.Second, "the shadow's latency is the copy's own")
}

func TestShadow_FailingShadowDoesNotFailTheCaller(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{}, `{"y": 1}`, `{"error": "boom"}`)
	f.shadow.status.Store(http.StatusInternalServerError)
	f.set(100, settings.ShadowCompareJSON, 0)
	f.predictOK(3)
	f.awaitFigures(store.ShadowFigures{Copied: 3, Errors: 3})

	// A shadow that cannot be reached at all fails the copies, not the callers.
	f.shadow.Close()
	f.predictOK(2)
	f.awaitFigures(store.ShadowFigures{Copied: 5, Errors: 5})
}

func TestShadow_CountsEqualAndDifferentAnswers(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{}, `{"y": 1.0, "z": [1, "a"]}`, ``)
	for _, c := range []struct {
		name      string
		shadow    string
		status    int
		compare   settings.ShadowCompare
		tolerance float64
		equal     bool
	}{
		{"same JSON written otherwise", `{"z":[1,"a"],"y":1}`, 200, settings.ShadowCompareJSON, 0, true},
		{"within the tolerance", `{"y": 1.004, "z": [1, "a"]}`, 200, settings.ShadowCompareJSON, 0.01, true},
		{"beyond the tolerance", `{"y": 1.004, "z": [1, "a"]}`, 200, settings.ShadowCompareJSON, 0.001, false},
		{"another value", `{"y": 1.0, "z": [1, "b"]}`, 200, settings.ShadowCompareJSON, 0, false},
		{"another status", `{"y": 1.0, "z": [1, "a"]}`, 404, settings.ShadowCompareJSON, 0, false},
		{"compare none looks at the status only", `{"other": true}`, 200, settings.ShadowCompareNone, 0, true},
		{"compare none still sees another status", `{"y": 1.0, "z": [1, "a"]}`, 400, settings.ShadowCompareNone, 0, false},
	} {
		f.shadow.body.Store(c.shadow)
		f.shadow.status.Store(int64(c.status))
		f.set(100, c.compare, c.tolerance)
		f.predictOK(2)
		want := store.ShadowFigures{Copied: 2, Equal: 2}
		if !c.equal {
			want = store.ShadowFigures{Copied: 2, Different: 2}
		}
		f.awaitFigures(want)
		t.Logf("%s: %+v", c.name, want)
	}
}

func TestShadow_JSONEqual(t *testing.T) {
	for _, c := range []struct {
		a, b      string
		tolerance float64
		want      bool
	}{
		{`{"a": 1, "b": [true, null, "x"]}`, `{"b":[true,null,"x"],"a":1.0}`, 0, true},
		{`[1, 2]`, `[1, 2, 3]`, 1, false},
		{`{"a": 1}`, `{"a": 1, "b": 2}`, 0, false},
		{`{"a": 1}`, `{"b": 1}`, 0, false},
		{`1.5`, `1.25`, 0.25, true},
		{`1.5`, `1.2`, 0.25, false},
		{`"1"`, `1`, 0, false},
		{`{"a": 1}`, `{"a": 1} {"a": 1}`, 0, false},
		{`not json`, `not json`, 0, true},
		{`not json`, `not JSON`, 0, false},
		{`12345678901234567890123`, `12345678901234567890123`, 0, true},
	} {
		assert.Equal(t, c.want, gateway.JSONEqual([]byte(c.a), []byte(c.b), c.tolerance), "%s vs %s within %g", c.a, c.b, c.tolerance)
	}
}

func TestShadow_DropsPastTheConcurrencyBoundAndLongBodies(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{MaxShadowCopies: 1}, `{"y": 1}`, `{"y": 1}`)
	gate := make(chan struct{})
	f.shadow.gate.Store(gate)
	f.set(100, settings.ShadowCompareJSON, 0)

	f.predictOK(4)
	require.Eventually(t, func() bool { return f.shadow.hits.Load() == 1 }, time.Second, 5*time.Millisecond)
	f.awaitFigures(store.ShadowFigures{Copied: 1, Dropped: 3})
	close(gate)
	f.awaitFigures(store.ShadowFigures{Copied: 1, Equal: 1, Dropped: 3})

	// A body the gateway does not keep whole is not copied; the caller is answered as ever.
	long := `{"pad": "` + strings.Repeat("x", 70<<10) + `"}`
	a := f.predict("production", long)
	require.Equal(t, http.StatusOK, a.status, a.body)
	req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/predict", strings.NewReader(`{"x": 1}`))
	req.ContentLength = -1
	a = f.do(req)
	require.Equal(t, http.StatusOK, a.status, a.body)
	f.awaitFigures(store.ShadowFigures{Copied: 1, Equal: 1, Dropped: 5})
	assert.Equal(t, int64(1), f.shadow.hits.Load())
}

func TestShadow_NoReadyReplicaDropsWithoutWaking(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{}, `{"y": 1}`, `{"y": 1}`)
	d := f.deployment("", false) // no replica
	f.shadowID = d.ID
	f.set(100, settings.ShadowCompareJSON, 0)
	f.predictOK(3)
	f.awaitFigures(store.ShadowFigures{Dropped: 3})
}

func TestShadow_SyncPassthroughIsCopied(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{}, `{"y": 1}`, `{"y": 1}`)
	f.set(100, settings.ShadowCompareJSON, 0)
	a := f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/production/sync/v1/anything", strings.NewReader(`{}`)))
	require.Equal(t, http.StatusOK, a.status, a.body)
	f.awaitFigures(store.ShadowFigures{Copied: 1, Equal: 1})
}

func TestShadow_FiguresOfSeveralGatewaysAddUp(t *testing.T) {
	f := newShadowFixture(t, gateway.Options{}, `{"y": 1}`, `{"y": 1}`)
	f.set(100, settings.ShadowCompareJSON, 0)

	// A second gateway on the same database, with its own figures.
	ctx, cancel := context.WithCancel(context.Background())
	second, err := gateway.New(gateway.Options{DB: f.db, DatabaseURL: dbURL, ID: "second-" + modelplane.NewID(6),
		ReportEvery: 100 * time.Millisecond})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- second.Run(ctx) }()
	t.Cleanup(func() { cancel(); require.NoError(t, <-done) })
	srv := httptest.NewServer(second.Handler(nil))
	t.Cleanup(srv.Close)
	require.Eventually(t, func() bool {
		id, _ := second.ShadowOf(f.model.ID, modelplane.ProductionEnvironment)
		return id == f.shadowID
	}, 2*time.Second, 5*time.Millisecond)

	f.predictOK(3)
	for range 4 {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/models/"+f.model.ID+"/production/predict", strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Api-Key "+f.key)
		a := f.do(req)
		require.Equal(t, http.StatusOK, a.status, a.body)
	}
	f.awaitFigures(store.ShadowFigures{Copied: 7, Equal: 7})
}
