package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
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

// gate is a model server whose predictions wait until the test opens it, counting how many
// run at once.
type gate struct {
	*httptest.Server
	open           chan struct{}
	opened         sync.Once
	inFlight, most atomic.Int64
	served         atomic.Int64
}

func newGate(t *testing.T) *gate {
	t.Helper()
	g := &gate{open: make(chan struct{})}
	g.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := g.inFlight.Add(1)
		for {
			m := g.most.Load()
			if n <= m || g.most.CompareAndSwap(m, n) {
				break
			}
		}
		select {
		case <-g.open:
		case <-r.Context().Done():
		}
		g.inFlight.Add(-1)
		g.served.Add(1)
		_, _ = w.Write([]byte(`{"ok":true}`))
	}))
	t.Cleanup(g.Close)
	t.Cleanup(g.release)
	return g
}

func (g *gate) addr() string { return strings.TrimPrefix(g.URL, "http://") }

func (g *gate) release() { g.opened.Do(func() { close(g.open) }) }

// fullDeployment makes a deployment with one replica at the gate, concurrency_target 2 and the
// policy (none when ""), and waits until the gateway has it so.
func fullDeployment(t *testing.T, f *fixture, g *gate, policy settings.BackpressurePolicy) store.Deployment {
	t.Helper()
	ctx := context.Background()
	d := f.deployment("", false, g.addr())
	as := settings.DefaultAutoscalingSettings()
	as.ConcurrencyTarget = 2
	require.NoError(t, store.UpdateDeploymentAutoscaling(ctx, f.db, f.model.ID, d.ID, as))
	var bp settings.RequestBackpressureSettings
	if policy != "" {
		bp.Policy = &policy
	}
	require.NoError(t, store.UpdateDeploymentBackpressure(ctx, f.db, f.model.ID, d.ID, bp))
	require.Eventually(t, func() bool {
		p, target := f.gw.Backpressure(f.model.ID, d.ID)
		return p == string(policy) && target == 2 && len(f.gw.Routable(f.model.ID, d.ID)) == 1
	}, 2*time.Second, 5*time.Millisecond, "the gateway never loaded the deployment's settings (a change of them is a routing change)")
	return d
}

// send predicts in the background; the answer arrives on the channel.
func send(f *fixture, d store.Deployment) <-chan answer {
	out := make(chan answer, 1)
	req := f.request(http.MethodPost, "/models/"+f.model.ID+"/deployment/"+d.ID+"/predict", strings.NewReader(`{}`))
	go func() {
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			out <- answer{status: -1, body: err.Error()}
			return
		}
		defer res.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		for {
			n, err := res.Body.Read(buf)
			b.Write(buf[:n])
			if err != nil {
				break
			}
		}
		out <- answer{status: res.StatusCode, header: res.Header, body: b.String()}
	}()
	return out
}

func waitInFlight(t *testing.T, g *gate, n int64) {
	t.Helper()
	require.Eventually(t, func() bool { return g.inFlight.Load() == n }, 2*time.Second, 2*time.Millisecond,
		"the model never had %d requests in flight (has %d)", n, g.inFlight.Load())
}

func TestBackpressure_RejectOnFullAnswers429(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	g := newGate(t)
	d := fullDeployment(t, f, g, settings.BackpressureRejectOnFull)

	first, second := send(f, d), send(f, d)
	waitInFlight(t, g, 2)
	a := f.predict("deployment/"+d.ID, `{}`)
	require.Equal(t, http.StatusTooManyRequests, a.status, a.body)
	assert.Equal(t, "1", a.header.Get("Retry-After"))
	assert.Contains(t, errorMessage(t, a), "REJECT_ON_FULL")

	g.release()
	for _, c := range []<-chan answer{first, second} {
		a := <-c
		require.Equal(t, http.StatusOK, a.status, a.body)
	}
	require.Equal(t, http.StatusOK, f.predict("deployment/"+d.ID, `{}`).status, "with room again it is served")
	assert.EqualValues(t, 3, g.served.Load(), "the refused request never reached the model")
}

func TestBackpressure_QueueOnFullHoldsUpToTheTargetPerReplicaThen429(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	g := newGate(t)
	d := fullDeployment(t, f, g, settings.BackpressureQueueOnFull)

	var answers []<-chan answer
	for range 2 {
		answers = append(answers, send(f, d))
	}
	waitInFlight(t, g, 2)
	for range 2 {
		answers = append(answers, send(f, d))
	}
	require.Eventually(t, func() bool { return f.gw.Queued(d.ID) == 2 }, 2*time.Second, 2*time.Millisecond,
		"two requests beyond the target wait")
	a := f.predict("deployment/"+d.ID, `{}`)
	require.Equal(t, http.StatusTooManyRequests, a.status, a.body)
	assert.Contains(t, errorMessage(t, a), "already queues 2 requests")
	assert.EqualValues(t, 2, g.inFlight.Load(), "the waiting requests are not sent on")

	g.release()
	for _, c := range answers {
		a := <-c
		require.Equal(t, http.StatusOK, a.status, a.body)
	}
	assert.EqualValues(t, 4, g.served.Load())
	assert.EqualValues(t, 2, g.most.Load(), "the model never had more than its concurrency target at once")
	assert.Zero(t, f.gw.Queued(d.ID))
}

func TestBackpressure_WithoutAPolicyEverythingIsForwarded(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	g := newGate(t)
	d := fullDeployment(t, f, g, "")
	var answers []<-chan answer
	for range 3 {
		answers = append(answers, send(f, d))
	}
	waitInFlight(t, g, 3)
	g.release()
	for _, c := range answers {
		require.Equal(t, http.StatusOK, (<-c).status)
	}
}

func TestBackpressure_AQueuedRequestEndsWhenItsWaitDoes(t *testing.T) {
	f := newFixture(t, gateway.Options{ColdStartTimeout: 300 * time.Millisecond})
	g := newGate(t)
	d := fullDeployment(t, f, g, settings.BackpressureQueueOnFull)
	held := []<-chan answer{send(f, d), send(f, d)}
	waitInFlight(t, g, 2)

	// No room within the wait: 504.
	a := f.predict("deployment/"+d.ID, `{}`)
	require.Equal(t, http.StatusGatewayTimeout, a.status, a.body)
	assert.Contains(t, errorMessage(t, a), "had no replica with room")

	// Deactivated while it waits: 404.
	waiting := send(f, d)
	require.Eventually(t, func() bool { return f.gw.Queued(d.ID) == 1 }, 2*time.Second, 2*time.Millisecond)
	require.NoError(t, store.SetDeploymentStatus(context.Background(), f.db, d.ID, modelplane.DeploymentInactive, ""))
	a = <-waiting
	require.Equal(t, http.StatusNotFound, a.status, a.body)
	assert.Contains(t, errorMessage(t, a), "deactivated while the request waited")

	g.release()
	for _, c := range held {
		require.Equal(t, http.StatusOK, (<-c).status)
	}
	assert.EqualValues(t, 2, g.served.Load())
}

func TestBackpressure_ClearingThePolicyLetsWaitingRequestsThrough(t *testing.T) {
	f := newFixture(t, gateway.Options{})
	g := newGate(t)
	d := fullDeployment(t, f, g, settings.BackpressureQueueOnFull)
	answers := []<-chan answer{send(f, d), send(f, d)}
	waitInFlight(t, g, 2)
	answers = append(answers, send(f, d))
	require.Eventually(t, func() bool { return f.gw.Queued(d.ID) == 1 }, 2*time.Second, 2*time.Millisecond)

	require.NoError(t, store.UpdateDeploymentBackpressure(context.Background(), f.db, f.model.ID, d.ID, settings.RequestBackpressureSettings{}))
	waitInFlight(t, g, 3)
	g.release()
	for _, c := range answers {
		require.Equal(t, http.StatusOK, (<-c).status)
	}
}
