package gateway_test

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
	"github.com/modelplane/modelplane/workflows/contract"
)

// fakeTemporal answers the gateway's Wake updates like the Deployment workflow would: after
// delay it records a READY replica at addr and the status ACTIVE. A zero addr never wakes.
type fakeTemporal struct {
	client.Client
	t     *testing.T
	db    func() *fixture
	addr  string
	delay time.Duration
	wakes atomic.Int64
	once  sync.Once
}

func (f *fakeTemporal) UpdateWorkflow(_ context.Context, o client.UpdateWorkflowOptions) (client.WorkflowUpdateHandle, error) {
	if o.UpdateName != contract.UpdateWake {
		f.t.Errorf("unexpected update %s", o.UpdateName)
	}
	f.wakes.Add(1)
	id := strings.TrimPrefix(o.WorkflowID, "deployment:")
	if f.addr != "" {
		f.once.Do(func() {
			go func() {
				fx := f.db()
				ctx := context.Background()
				_ = store.SetDeploymentStatus(ctx, fx.db, id, modelplane.DeploymentWakingUp, "")
				time.Sleep(f.delay)
				r, _, err := store.CreateReplica(ctx, fx.db, store.NewReplica{ID: modelplane.NewID(12), DeploymentID: id})
				if err == nil {
					_ = store.MarkReplicaReady(ctx, fx.db, r.ID, f.addr, "/predict", "")
					_ = store.SetDeploymentStatus(ctx, fx.db, id, modelplane.DeploymentActive, "")
				}
			}()
		})
	}
	return nil, nil
}

// sleepingDeployment makes a deployment at zero that serves production.
func (f *fixture) sleepingDeployment() store.Deployment {
	f.t.Helper()
	d := f.deployment("", false)
	require.NoError(f.t, store.SetDeploymentStatus(context.Background(), f.db, d.ID, modelplane.DeploymentScaledToZero, ""))
	f.point(modelplane.ProductionEnvironment, d.ID)
	require.Eventually(f.t, func() bool { return f.gw.RoutesTo(f.model.ID, modelplane.ProductionEnvironment) == d.ID },
		2*time.Second, 5*time.Millisecond)
	time.Sleep(50 * time.Millisecond) // the status change's reload
	return d
}

func TestWake_HeldRequestsAllSucceedOnOneWake(t *testing.T) {
	model := newServer(t, "woken", testmodel.Options{})
	var f *fixture
	tc := &fakeTemporal{t: t, db: func() *fixture { return f }, addr: model.addr(), delay: 300 * time.Millisecond}
	f = newFixture(t, gateway.Options{Temporal: tc})
	d := f.sleepingDeployment()

	const n = 50
	var wg sync.WaitGroup
	statuses := make(chan int, n)
	start := time.Now()
	for range n {
		wg.Add(1)
		go func() { defer wg.Done(); statuses <- f.predict("production", `{"wake":1}`).status }()
	}
	wg.Wait()
	close(statuses)
	for s := range statuses {
		require.Equal(t, http.StatusOK, s)
	}
	assert.GreaterOrEqual(t, time.Since(start), 300*time.Millisecond, "requests waited for the replica")
	assert.EqualValues(t, 1, tc.wakes.Load(), "one Wake for fifty requests")
	assert.EqualValues(t, n, model.hits.Load())
	m, _ := series(t, f, "modelplane_cold_start_seconds", map[string]string{"deployment_id": d.ID})
	assert.EqualValues(t, n, m.GetHistogram().GetSampleCount(), "every held request's wait is recorded")
}

func TestWake_LimitsAndTimeouts(t *testing.T) {
	tc := &fakeTemporal{t: t} // never wakes
	f := newFixture(t, gateway.Options{Temporal: tc, MaxHeld: 2, ColdStartTimeout: 400 * time.Millisecond})
	d := f.sleepingDeployment()

	statuses := make(chan int, 3)
	for range 2 {
		go func() { statuses <- f.predict("production", "{}").status }()
	}
	time.Sleep(100 * time.Millisecond)
	a := f.predict("production", "{}")
	require.Equal(t, http.StatusTooManyRequests, a.status, "a third request finds the queue full")
	assert.Contains(t, errorMessage(t, a), "already holds 2 requests")
	assert.Equal(t, http.StatusGatewayTimeout, <-statuses)
	b := <-statuses
	assert.Equal(t, http.StatusGatewayTimeout, b, "held past the cold-start timeout")

	// A deployment deactivated while requests wait answers them 404.
	held := make(chan answer, 1)
	go func() { held <- f.predict("production", "{}") }()
	time.Sleep(50 * time.Millisecond)
	require.NoError(t, store.SetDeploymentStatus(context.Background(), f.db, d.ID, "INACTIVE", ""))
	got := <-held
	require.Equal(t, http.StatusNotFound, got.status)
	assert.Contains(t, errorMessage(t, got), "deactivated while it was waking up")
}

func TestWake_RouteAndNoTemporal(t *testing.T) {
	tc := &fakeTemporal{t: t}
	f := newFixture(t, gateway.Options{Temporal: tc})
	d := f.sleepingDeployment()
	a := f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/production/wake", nil))
	require.Equal(t, http.StatusAccepted, a.status, a.body)
	assert.Contains(t, a.body, d.ID)
	assert.EqualValues(t, 1, tc.wakes.Load())

	plain := newFixture(t, gateway.Options{})
	pd := plain.sleepingDeployment()
	a = plain.predict("deployment/"+pd.ID, "{}")
	require.Equal(t, http.StatusServiceUnavailable, a.status)
	assert.Contains(t, errorMessage(t, a), "cannot wake it")
}
