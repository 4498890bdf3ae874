package gateway_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
	"github.com/modelplane/modelplane/workflows/contract"
)

// asyncTemporal records the workflow starts and signals of async requests.
type asyncTemporal struct {
	client.Client
	failStart bool
	mu        sync.Mutex
	starts    []asyncStart
	signals   []string // "workflow ID/signal name"
}

type asyncStart struct {
	opts     client.StartWorkflowOptions
	workflow any
	args     []any
}

func (f *asyncTemporal) ExecuteWorkflow(_ context.Context, o client.StartWorkflowOptions, wf any, args ...any) (client.WorkflowRun, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.starts = append(f.starts, asyncStart{o, wf, args})
	if f.failStart {
		return nil, errors.New("temporal is down")
	}
	return nil, nil
}

func (f *asyncTemporal) SignalWorkflow(_ context.Context, id, _, name string, _ any) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.signals = append(f.signals, id+"/"+name)
	return nil
}

func (f *asyncTemporal) recorded() ([]asyncStart, []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]asyncStart(nil), f.starts...), append([]string(nil), f.signals...)
}

func (f *fixture) asyncPredict(target, body string) answer {
	f.t.Helper()
	return f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/"+target+"/async_predict", strings.NewReader(body)))
}

// accepted posts an async request that must be accepted and returns its ID.
func (f *fixture) accepted(target, body string) string {
	f.t.Helper()
	a := f.asyncPredict(target, body)
	require.Equal(f.t, http.StatusCreated, a.status, "async_predict %s: %s", body, a.body)
	var out struct {
		RequestID string `json:"request_id"`
	}
	require.NoError(f.t, json.Unmarshal([]byte(a.body), &out))
	require.Len(f.t, out.RequestID, 16, "request ID in %s", a.body)
	return out.RequestID
}

func (f *fixture) asyncRow(id string) store.AsyncRequest {
	f.t.Helper()
	r, err := store.GetAsyncRequest(context.Background(), f.db, "", id)
	require.NoError(f.t, err)
	return r
}

// servingDeployment makes a deployment with a READY replica, points production at it and
// waits until the gateway routes it.
func (f *fixture) servingDeployment(addr string) store.Deployment {
	f.t.Helper()
	d := f.deployment("", false, addr)
	f.point(modelplane.ProductionEnvironment, d.ID)
	require.Eventually(f.t, func() bool { return len(f.gw.Routable(f.model.ID, d.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)
	return d
}

// otherWorkspace makes a second workspace with a model and returns an API key of it.
func (f *fixture) otherWorkspace() (key string, modelID string) {
	f.t.Helper()
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, f.db, "gw-other-"+modelplane.NewID(6))
	require.NoError(f.t, err)
	m, err := store.CreateModel(ctx, f.db, ws.ID, "other")
	require.NoError(f.t, err)
	_, key, err = apikey.Create(ctx, f.db, ws.ID, "other", false)
	require.NoError(f.t, err)
	return key, m.ID
}

func TestAsyncPredict_RecordsTheRequestWithoutStartingAWorkflow(t *testing.T) {
	tc := &asyncTemporal{}
	f := newFixture(t, gateway.Options{Temporal: tc, MaxAsyncAttempts: -1})
	model := newServer(t, "m", testmodel.Options{})
	d := f.servingDeployment(model.addr())

	id := f.accepted("production", `{"model_input":{"x":1},"priority":0,"max_time_in_queue_seconds":60,
		"inference_retry_config":{"max_attempts":2}}`)
	row := f.asyncRow(id)
	assert.Equal(t, modelplane.AsyncQueued, row.Status)
	assert.Equal(t, f.model.WorkspaceID, row.WorkspaceID)
	assert.Equal(t, f.model.ID, row.ModelID)
	assert.Equal(t, d.ID, row.DeploymentID)
	assert.Equal(t, modelplane.ProductionEnvironment, row.Environment)
	assert.JSONEq(t, `{"x":1}`, string(row.ModelInput), "the model input is stored as sent, without its envelope")
	assert.Equal(t, 0, row.Priority)
	assert.Equal(t, 60, row.MaxTimeInQueueSeconds)
	assert.Equal(t, row.CreatedAt.Add(time.Minute), row.ExpiresAt)
	assert.Equal(t, modelplane.RetryConfig{MaxAttempts: 2, InitialDelayMs: 1000, MaxDelayMs: 5000}, row.RetryConfig,
		"fields of inference_retry_config that are not given keep their defaults")
	assert.Equal(t, modelplane.WebhookNone, row.WebhookStatus)
	assert.False(t, row.WorkflowStarted)
	assert.Nil(t, row.WorkflowWantedAt, "a queued request needs no workflow")
	starts, _ := tc.recorded()
	assert.Empty(t, starts, "accepting a request starts no workflow: the row is the request")

	t.Run("defaults", func(t *testing.T) {
		row := f.asyncRow(f.accepted("deployment/"+d.ID, `{"model_input":"just text"}`))
		assert.Equal(t, d.ID, row.DeploymentID)
		assert.Empty(t, row.Environment, "a request to a deployment ID follows no environment")
		assert.Equal(t, `"just text"`, string(row.ModelInput))
		assert.Equal(t, 1, row.Priority)
		assert.Equal(t, 600, row.MaxTimeInQueueSeconds)
		assert.Equal(t, modelplane.DefaultRetryConfig(), row.RetryConfig)
	})
	t.Run("development", func(t *testing.T) {
		dev := f.deployment("", true, model.addr())
		require.Eventually(t, func() bool { return len(f.gw.Routable(f.model.ID, dev.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)
		assert.Equal(t, dev.ID, f.asyncRow(f.accepted("development", `{"model_input":1}`)).DeploymentID)
	})
	t.Run("accepted without Temporal", func(t *testing.T) {
		plain := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
		pd := plain.servingDeployment(model.addr())
		assert.Equal(t, pd.ID, plain.asyncRow(plain.accepted("production", `{"model_input":1}`)).DeploymentID)
	})
	t.Run("many at once each get their own row", func(t *testing.T) {
		var wg sync.WaitGroup
		ids := make([]string, 64)
		for i := range ids {
			wg.Go(func() { ids[i] = f.accepted("production", fmt.Sprintf(`{"model_input":{"i":%d}}`, i)) })
		}
		wg.Wait()
		for i, id := range ids {
			assert.JSONEq(t, fmt.Sprintf(`{"i":%d}`, i), string(f.asyncRow(id).ModelInput), "request %d", i)
		}
	})
}

// TestAsyncPredict_EnvironmentMeansItsCurrentDeployment: during a canary, async requests are
// recorded for the environment's current deployment, not split by weight: they follow the
// environment when it switches.
func TestAsyncPredict_EnvironmentMeansItsCurrentDeployment(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
	cur, cand := newServer(t, "current", testmodel.Options{}), newServer(t, "candidate", testmodel.Options{})
	dc, dn := f.deployment("", false, cur.addr()), f.deployment("", false, cand.addr())
	f.point(modelplane.ProductionEnvironment, dc.ID)
	ctx := context.Background()
	p, err := store.CreatePromotion(ctx, f.db, store.NewPromotion{ID: modelplane.NewID(8), ModelID: f.model.ID,
		Environment: modelplane.ProductionEnvironment, SourceDeploymentID: dn.ID, PreviousDeploymentID: &dc.ID, WorkflowID: "test"})
	require.NoError(t, err)
	require.NoError(t, store.SetPromotionCandidate(ctx, f.db, p.ID, dn.ID))
	for _, percent := range []int{30, 100} {
		require.NoError(t, store.SetPromotionStatus(ctx, f.db, p.ID, modelplane.PromotionRampingUp, percent, "", false))
		require.Eventually(t, func() bool { return f.gw.Weight(f.model.ID, modelplane.ProductionEnvironment, dn.ID) == percent },
			2*time.Second, time.Millisecond)
		for range 10 {
			row := f.asyncRow(f.accepted("production", `{"model_input":1}`))
			require.Equal(t, dc.ID, row.DeploymentID, "with the candidate at %d%%", percent)
		}
	}
}

func TestAsyncPredict_RefusesBadInputNamingTheField(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
	d := f.servingDeployment(newServer(t, "m", testmodel.Options{}).addr())
	_, err := store.RotateWebhookSecret(context.Background(), f.db, f.model.WorkspaceID)
	require.NoError(t, err)
	count := func() int {
		var n int
		require.NoError(t, f.db.Get(&n, `SELECT count(*) FROM async_requests WHERE deployment_id = $1`, d.ID))
		return n
	}

	for _, c := range []struct{ name, body, want string }{
		{"not JSON", `{"model_input":`, "not valid JSON"},
		{"empty", ``, "not valid JSON"},
		{"not an object", `[1, 2]`, "must be a JSON object"},
		{"trailing data", `{"model_input":1} {}`, "one JSON object"},
		{"unknown field", `{"model_input":1,"colour":"red"}`, `unknown field "colour"`},
		{"unknown retry field", `{"model_input":1,"inference_retry_config":{"retries":2}}`, `unknown field "retries"`},
		{"model_input missing", `{"priority":1}`, "model_input is required"},
		{"model_input null", `{"model_input":null}`, "model_input is required"},
		{"priority -1", `{"model_input":1,"priority":-1}`, "priority must be 0 to 2, got -1"},
		{"priority 3", `{"model_input":1,"priority":3}`, "priority must be 0 to 2, got 3"},
		{"priority text", `{"model_input":1,"priority":"x"}`, "priority must be an integer"},
		{"priority fraction", `{"model_input":1,"priority":1.5}`, "priority must be an integer"},
		{"max_time_in_queue_seconds 9", `{"model_input":1,"max_time_in_queue_seconds":9}`, "max_time_in_queue_seconds must be 10 to 259200, got 9"},
		{"max_time_in_queue_seconds 259201", `{"model_input":1,"max_time_in_queue_seconds":259201}`, "max_time_in_queue_seconds must be 10 to 259200, got 259201"},
		{"max_time_in_queue_seconds text", `{"model_input":1,"max_time_in_queue_seconds":"600"}`, "max_time_in_queue_seconds must be an integer"},
		{"retry config not an object", `{"model_input":1,"inference_retry_config":"x"}`, "inference_retry_config must be an object"},
		{"max_attempts 0", `{"model_input":1,"inference_retry_config":{"max_attempts":0}}`, "inference_retry_config.max_attempts must be 1 to 10, got 0"},
		{"max_attempts 11", `{"model_input":1,"inference_retry_config":{"max_attempts":11}}`, "inference_retry_config.max_attempts must be 1 to 10, got 11"},
		{"max_attempts text", `{"model_input":1,"inference_retry_config":{"max_attempts":"3"}}`, "inference_retry_config.max_attempts must be an integer"},
		{"initial_delay_ms -1", `{"model_input":1,"inference_retry_config":{"initial_delay_ms":-1}}`, "inference_retry_config.initial_delay_ms must be 0 to 10000, got -1"},
		{"initial_delay_ms 10001", `{"model_input":1,"inference_retry_config":{"initial_delay_ms":10001}}`, "inference_retry_config.initial_delay_ms must be 0 to 10000, got 10001"},
		{"max_delay_ms -1", `{"model_input":1,"inference_retry_config":{"max_delay_ms":-1}}`, "inference_retry_config.max_delay_ms must be 0 to 60000, got -1"},
		{"max_delay_ms 60001", `{"model_input":1,"inference_retry_config":{"max_delay_ms":60001}}`, "inference_retry_config.max_delay_ms must be 0 to 60000, got 60001"},
		{"webhook not a URL", `{"model_input":1,"webhook_endpoint":"not a url"}`, "webhook_endpoint: invalid webhook URL"},
		{"webhook not a string", `{"model_input":1,"webhook_endpoint":5}`, "webhook_endpoint must be a string"},
		{"webhook ftp", `{"model_input":1,"webhook_endpoint":"ftp://example.com/hook"}`, `webhook_endpoint: invalid webhook URL: scheme "ftp"`},
		{"webhook loopback", `{"model_input":1,"webhook_endpoint":"http://127.0.0.1:8080/hook"}`, "webhook_endpoint: webhook address 127.0.0.1 is refused: loopback"},
		{"webhook localhost", `{"model_input":1,"webhook_endpoint":"http://localhost/hook"}`, "webhook_endpoint: webhook address localhost is refused: loopback"},
		{"webhook private", `{"model_input":1,"webhook_endpoint":"https://10.1.2.3/hook"}`, "webhook_endpoint: webhook address 10.1.2.3 is refused: private"},
		{"webhook IPv4-compatible loopback", `{"model_input":1,"webhook_endpoint":"http://[::7f00:1]/hook"}`, "webhook_endpoint: webhook address ::7f00:1 is refused: loopback"},
		{"webhook IPv4-mapped loopback", `{"model_input":1,"webhook_endpoint":"http://[::ffff:127.0.0.1]/hook"}`, "webhook_endpoint: webhook address ::ffff:127.0.0.1 is refused: loopback"},
		{"webhook NAT64 loopback", `{"model_input":1,"webhook_endpoint":"http://[64:ff9b::7f00:1]/hook"}`, "webhook_endpoint: webhook address 64:ff9b::7f00:1 is refused: loopback (NAT64"},
		{"webhook NAT64 local-use", `{"model_input":1,"webhook_endpoint":"http://[64:ff9b:1::a00:1]/hook"}`, "webhook_endpoint: webhook address 64:ff9b:1::a00:1 is refused: NAT64 local-use"},
		{"webhook 6to4 loopback", `{"model_input":1,"webhook_endpoint":"http://[2002:7f00:1::]/hook"}`, "webhook_endpoint: webhook address 2002:7f00:1:: is refused: loopback (6to4"},
		{"webhook Teredo", `{"model_input":1,"webhook_endpoint":"http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/hook"}`, "is refused: Teredo"},
		{"webhook hex host", `{"model_input":1,"webhook_endpoint":"http://0x7f000001/hook"}`, `webhook_endpoint: invalid webhook URL: host "0x7f000001" is a numeric address`},
		{"webhook decimal host", `{"model_input":1,"webhook_endpoint":"http://2130706433/hook"}`, `webhook_endpoint: invalid webhook URL: host "2130706433" is a numeric address`},
		{"webhook shortened host", `{"model_input":1,"webhook_endpoint":"http://127.1/hook"}`, `webhook_endpoint: invalid webhook URL: host "127.1" is a numeric address`},
		{"webhook octal host", `{"model_input":1,"webhook_endpoint":"http://017700000001/hook"}`, `webhook_endpoint: invalid webhook URL: host "017700000001" is a numeric address`},
		{"webhook zero-padded host", `{"model_input":1,"webhook_endpoint":"http://0177.0.0.1/hook"}`, `webhook_endpoint: invalid webhook URL: host "0177.0.0.1" is a numeric address`},
	} {
		t.Run(c.name, func(t *testing.T) {
			a := f.asyncPredict("production", c.body)
			require.Equal(t, http.StatusBadRequest, a.status, a.body)
			assert.Contains(t, errorMessage(t, a), c.want)
		})
	}
	assert.Zero(t, count(), "no refused request is recorded")

	t.Run("over 256 KiB", func(t *testing.T) {
		big := `{"model_input":"` + strings.Repeat("a", 256<<10) + `"}`
		a := f.asyncPredict("production", big)
		require.Equal(t, http.StatusRequestEntityTooLarge, a.status, a.body)
		assert.Contains(t, errorMessage(t, a), "262144 bytes")
		// Without a Content-Length the limit is found while reading.
		req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/async_predict", io.MultiReader(strings.NewReader(big)))
		req.ContentLength = -1
		a = f.do(req)
		require.Equal(t, http.StatusRequestEntityTooLarge, a.status, a.body)
		// Just under the limit is fine.
		f.accepted("production", `{"model_input":"`+strings.Repeat("a", 256<<10-20)+`"}`)
	})
	t.Run("limits are inclusive", func(t *testing.T) {
		f.accepted("production", `{"model_input":1,"priority":0,"max_time_in_queue_seconds":10,
			"inference_retry_config":{"max_attempts":1,"initial_delay_ms":0,"max_delay_ms":0}}`)
		row := f.asyncRow(f.accepted("production", `{"model_input":1,"priority":2,"max_time_in_queue_seconds":259200,
			"inference_retry_config":{"max_attempts":10,"initial_delay_ms":10000,"max_delay_ms":60000},
			"webhook_endpoint":"https://hooks.example.com/done"}`))
		assert.Equal(t, modelplane.RetryConfig{MaxAttempts: 10, InitialDelayMs: 10000, MaxDelayMs: 60000}, row.RetryConfig)
		assert.Equal(t, "https://hooks.example.com/done", row.WebhookEndpoint)
		assert.Equal(t, modelplane.WebhookPending, row.WebhookStatus)
	})
	t.Run("private webhook allowed when configured", func(t *testing.T) {
		open := newFixture(t, gateway.Options{MaxAsyncAttempts: -1, WebhookAllowPrivate: true})
		open.servingDeployment(newServer(t, "m", testmodel.Options{}).addr())
		_, err := store.RotateWebhookSecret(context.Background(), open.db, open.model.WorkspaceID)
		require.NoError(t, err)
		row := open.asyncRow(open.accepted("production", `{"model_input":1,"webhook_endpoint":"http://127.0.0.1:8080/hook"}`))
		assert.Equal(t, "http://127.0.0.1:8080/hook", row.WebhookEndpoint)
		a := open.asyncPredict("production", `{"model_input":1,"webhook_endpoint":"ftp://127.0.0.1/hook"}`)
		require.Equal(t, http.StatusBadRequest, a.status, "allowing private addresses still checks the scheme")
		a = open.asyncPredict("production", `{"model_input":1,"webhook_endpoint":"http://0x7f000001/hook"}`)
		require.Equal(t, http.StatusBadRequest, a.status, "allowing private addresses still refuses numeric host forms")
		assert.Contains(t, errorMessage(t, a), "webhook_endpoint: invalid webhook URL")
	})
	t.Run("public webhook addresses are accepted", func(t *testing.T) {
		for _, u := range []string{"https://93.184.216.34/hook", "https://[2606:2800:220:1:248:1893:25c8:1946]/hook",
			"https://example.com/hook", "https://[64:ff9b::5db8:d822]/hook"} {
			row := f.asyncRow(f.accepted("production", `{"model_input":1,"webhook_endpoint":"`+u+`"}`))
			assert.Equal(t, u, row.WebhookEndpoint)
		}
	})
}

func TestAsyncPredict_WebhookNeedsSecret(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
	f.servingDeployment(newServer(t, "m", testmodel.Options{}).addr())
	body := `{"model_input":1,"webhook_endpoint":"https://hooks.example.com/x"}`
	a := f.asyncPredict("production", body)
	require.Equal(t, http.StatusUnprocessableEntity, a.status, a.body)
	msg := errorMessage(t, a)
	assert.Contains(t, msg, "no webhook secret")
	assert.Contains(t, msg, "modelplane webhook-secret --rotate")
	assert.Contains(t, msg, "POST /v1/webhook_secret")
	f.accepted("production", `{"model_input":1}`) // without a webhook no secret is needed

	_, err := store.RotateWebhookSecret(context.Background(), f.db, f.model.WorkspaceID)
	require.NoError(t, err)
	f.accepted("production", body)
}

func TestAsyncPredict_TargetsAndKeys(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
	model := newServer(t, "m", testmodel.Options{})
	ctx := context.Background()
	notFound := func(t *testing.T, a answer, want string) {
		t.Helper()
		require.Equal(t, http.StatusNotFound, a.status, a.body)
		assert.Contains(t, errorMessage(t, a), want)
	}
	t.Run("environment without deployment", func(t *testing.T) {
		notFound(t, f.asyncPredict("production", `{"model_input":1}`), "has no deployment: promote one to it")
	})
	t.Run("unknown environment", func(t *testing.T) {
		notFound(t, f.asyncPredict("environments/nope", `{"model_input":1}`), "has no environment nope")
	})
	t.Run("unknown deployment", func(t *testing.T) {
		notFound(t, f.asyncPredict("deployment/yyyyyyyy", `{"model_input":1}`), "has no deployment yyyyyyyy")
	})
	t.Run("deactivated", func(t *testing.T) {
		d := f.servingDeployment(model.addr())
		require.NoError(t, store.SetDeploymentStatus(ctx, f.db, d.ID, "INACTIVE", ""))
		require.Eventually(t, func() bool { return f.asyncPredict("production", `{"model_input":1}`).status == http.StatusNotFound },
			2*time.Second, 5*time.Millisecond)
		notFound(t, f.asyncPredict("deployment/"+d.ID, `{"model_input":1}`), "is deactivated")
	})
	t.Run("deleted", func(t *testing.T) {
		d := f.deployment("", false, model.addr())
		require.Eventually(t, func() bool { return len(f.gw.Routable(f.model.ID, d.ID)) == 1 }, 2*time.Second, 5*time.Millisecond)
		require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, f.model.ID, d.ID))
		require.Eventually(t, func() bool {
			return f.asyncPredict("deployment/"+d.ID, `{"model_input":1}`).status == http.StatusNotFound
		},
			2*time.Second, 5*time.Millisecond)
		notFound(t, f.asyncPredict("deployment/"+d.ID, `{"model_input":1}`), "was deleted")
	})
	t.Run("another workspace's model", func(t *testing.T) {
		key, _ := f.otherWorkspace()
		req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/async_predict", strings.NewReader(`{"model_input":1}`))
		req.Header.Set("Authorization", "Api-Key "+key)
		notFound(t, f.do(req), "model "+f.model.ID+" not found")
	})
	t.Run("no key", func(t *testing.T) {
		req := f.request(http.MethodPost, "/models/"+f.model.ID+"/production/async_predict", strings.NewReader(`{"model_input":1}`))
		req.Header.Del("Authorization")
		require.Equal(t, http.StatusUnauthorized, f.do(req).status)
	})
	t.Run("wrong method", func(t *testing.T) {
		a := f.do(f.request(http.MethodGet, "/models/"+f.model.ID+"/production/async_predict", nil))
		require.Equal(t, http.StatusMethodNotAllowed, a.status)
		assert.Equal(t, "POST", a.header.Get("Allow"))
	})
}

func TestAsyncPredict_RateLimitPerWorkspace(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1, AsyncRateLimit: 0.5}) // bursts of one
	model := newServer(t, "m", testmodel.Options{})
	f.servingDeployment(model.addr())
	f.accepted("production", `{"model_input":1}`)
	a := f.asyncPredict("production", `{"model_input":1}`)
	require.Equal(t, http.StatusTooManyRequests, a.status, a.body)
	assert.Equal(t, "2", a.header.Get("Retry-After"), "one token every two seconds")
	assert.Contains(t, errorMessage(t, a), "0.5 per second")

	// Another workspace has a bucket of its own.
	key, modelID := f.otherWorkspace()
	ctx := context.Background()
	var ws string
	require.NoError(t, f.db.Get(&ws, `SELECT workspace_id FROM models WHERE id = $1`, modelID))
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: modelID, WorkspaceID: ws})
	require.NoError(t, err)
	require.NoError(t, store.SetDeploymentStatus(ctx, f.db, d.ID, "ACTIVE", ""))
	require.Eventually(t, func() bool {
		req := f.request(http.MethodPost, "/models/"+modelID+"/deployment/"+d.ID+"/async_predict", strings.NewReader(`{"model_input":1}`))
		req.Header.Set("Authorization", "Api-Key "+key)
		return f.do(req).status == http.StatusCreated
	}, 2*time.Second, 20*time.Millisecond, "another workspace is not limited by the first one's requests")
}

func TestAsyncPredict_OpenRequestLimit(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1, MaxOpenAsync: 2})
	f.servingDeployment(newServer(t, "m", testmodel.Options{}).addr())
	first := f.accepted("production", `{"model_input":1}`)
	f.accepted("production", `{"model_input":2}`)
	a := f.asyncPredict("production", `{"model_input":3}`)
	require.Equal(t, http.StatusTooManyRequests, a.status, a.body)
	assert.NotEmpty(t, a.header.Get("Retry-After"))
	assert.Contains(t, errorMessage(t, a), "already has 2 async requests queued or in progress")

	require.Equal(t, http.StatusOK, f.do(f.request(http.MethodDelete, "/async_request/"+first, nil)).status)
	f.accepted("production", `{"model_input":3}`) // a finished request frees its place
}

// statusOf reads GET /async_request/{id} as a generic map, to check the shape exactly.
func statusOf(t *testing.T, f *fixture, path string) (int, map[string]any) {
	t.Helper()
	a := f.do(f.request(http.MethodGet, path, nil))
	var out map[string]any
	if a.status == http.StatusOK {
		require.NoError(t, json.Unmarshal([]byte(a.body), &out), a.body)
	}
	return a.status, out
}

func TestAsyncRequest_Status(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
	model := newServer(t, "m", testmodel.Options{})
	d := f.servingDeployment(model.addr())
	f.replica(d.ID, model.addr()) // room for two requests in progress
	ctx := context.Background()

	id := f.accepted("deployment/"+d.ID, `{"model_input":1}`)
	status, got := statusOf(t, f, "/async_request/"+id)
	require.Equal(t, http.StatusOK, status)
	row := f.asyncRow(id)
	assert.Equal(t, map[string]any{
		"request_id": id, "model_id": f.model.ID, "deployment_id": d.ID, "environment": nil,
		"status": "QUEUED", "webhook_status": "NO_WEBHOOK_PROVIDED",
		"created_at": row.CreatedAt.UTC().Format(time.RFC3339Nano), "status_at": row.StatusAt.UTC().Format(time.RFC3339Nano),
		"errors": []any{}, "attempts": 0.0,
	}, got, "no output key while there is none")
	_, err := store.ExpireAsyncRequest(ctx, f.db, id)
	require.NoError(t, err)

	// Finished with a JSON output: it comes back as JSON.
	jsonID := f.accepted("production", `{"model_input":2}`)
	claim, err := store.ClaimAsyncRequest(ctx, f.db, jsonID)
	require.NoError(t, err)
	require.True(t, claim.Claimed, "%+v", claim)
	_, err = store.FinishAsyncRequest(ctx, f.db, jsonID, store.AsyncOutcome{Status: modelplane.AsyncSucceeded,
		Output: []byte(`{"y":[1,2]}`), ContentType: "application/json", KeepOutput: time.Hour})
	require.NoError(t, err)
	_, got = statusOf(t, f, "/async_request/"+jsonID)
	assert.Equal(t, "SUCCEEDED", got["status"])
	assert.Equal(t, "production", got["environment"])
	assert.Equal(t, map[string]any{"y": []any{1.0, 2.0}}, got["output"])

	// Any other output comes back as a string.
	textID := f.accepted("production", `{"model_input":3}`)
	claim, err = store.ClaimAsyncRequest(ctx, f.db, textID)
	require.NoError(t, err)
	require.True(t, claim.Claimed)
	_, err = store.FinishAsyncRequest(ctx, f.db, textID, store.AsyncOutcome{Status: modelplane.AsyncSucceeded,
		Output: []byte("hello"), ContentType: "text/plain", KeepOutput: time.Hour})
	require.NoError(t, err)
	_, got = statusOf(t, f, "/async_request/"+textID)
	assert.Equal(t, "hello", got["output"])

	// Errors carry their attempt.
	_, got = statusOf(t, f, "/async_request/"+id)
	assert.Equal(t, "EXPIRED", got["status"])
	require.Len(t, got["errors"], 1)
	e := got["errors"].([]any)[0].(map[string]any)
	assert.Equal(t, "ASYNC_REQUEST_EXPIRED", e["code"])
	assert.NotEmpty(t, e["message"])
	assert.Contains(t, e, "attempt")

	t.Run("paths", func(t *testing.T) {
		status, got := statusOf(t, f, "/models/"+f.model.ID+"/async_request/"+jsonID)
		require.Equal(t, http.StatusOK, status)
		assert.Equal(t, jsonID, got["request_id"])
		req := f.request(http.MethodGet, "/async_request/"+jsonID, nil)
		req.Host = "model-" + f.model.ID + ".inference.example.com"
		a := f.do(req)
		require.Equal(t, http.StatusOK, a.status, a.body)
		assert.Contains(t, a.body, jsonID)

		_, otherModel := f.otherWorkspace()
		status, _ = statusOf(t, f, "/models/"+otherModel+"/async_request/"+jsonID)
		assert.Equal(t, http.StatusNotFound, status, "a path that names another model finds nothing")
		req = f.request(http.MethodGet, "/async_request/"+jsonID, nil)
		req.Host = "model-" + otherModel + ".inference.example.com"
		assert.Equal(t, http.StatusNotFound, f.do(req).status)
		status, _ = statusOf(t, f, "/async_request/zzzzzzzzzzzzzzzz")
		assert.Equal(t, http.StatusNotFound, status)
		a = f.do(f.request(http.MethodPost, "/async_request/"+jsonID, nil))
		require.Equal(t, http.StatusMethodNotAllowed, a.status)
		assert.Equal(t, "GET, DELETE", a.header.Get("Allow"))
	})
	t.Run("another workspace", func(t *testing.T) {
		key, _ := f.otherWorkspace()
		req := f.request(http.MethodGet, "/async_request/"+jsonID, nil)
		req.Header.Set("Authorization", "Api-Key "+key)
		a := f.do(req)
		require.Equal(t, http.StatusNotFound, a.status, "another workspace's request reads like none")
		assert.Contains(t, errorMessage(t, a), "async request "+jsonID+" not found")
		req = f.request(http.MethodDelete, "/async_request/"+id, nil)
		req.Header.Set("Authorization", "Api-Key "+key)
		require.Equal(t, http.StatusNotFound, f.do(req).status)
	})
}

func TestAsyncRequest_Cancel(t *testing.T) {
	tc := &asyncTemporal{}
	f := newFixture(t, gateway.Options{Temporal: tc, MaxAsyncAttempts: -1})
	f.servingDeployment(newServer(t, "m", testmodel.Options{}).addr())
	ctx := context.Background()
	cancelOf := func(path string) (int, map[string]any) {
		a := f.do(f.request(http.MethodDelete, path, nil))
		var out map[string]any
		if a.status == http.StatusOK {
			require.NoError(t, json.Unmarshal([]byte(a.body), &out), a.body)
		}
		return a.status, out
	}

	queued := f.accepted("production", `{"model_input":1}`)
	status, got := cancelOf("/async_request/" + queued)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, queued, got["request_id"])
	assert.Equal(t, true, got["canceled"])
	assert.NotEmpty(t, got["message"])
	assert.Equal(t, modelplane.AsyncCanceled, f.asyncRow(queued).Status)
	_, signals := tc.recorded()
	assert.Equal(t, []string{contract.AsyncWorkflowID(queued) + "/" + contract.SignalAsyncDispatch}, signals,
		"the workflow is told at once")

	status, got = cancelOf("/async_request/" + queued)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, false, got["canceled"])
	assert.Contains(t, got["message"], "CANCELED")

	running := f.accepted("production", `{"model_input":2}`)
	claim, err := store.ClaimAsyncRequest(ctx, f.db, running)
	require.NoError(t, err)
	require.True(t, claim.Claimed, "%+v", claim)
	status, got = cancelOf("/models/" + f.model.ID + "/async_request/" + running)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, false, got["canceled"])
	assert.Contains(t, got["message"], "IN_PROGRESS")
	assert.Equal(t, modelplane.AsyncInProgress, f.asyncRow(running).Status, "a running request is left running")
	_, signals = tc.recorded()
	assert.Len(t, signals, 1, "only a canceled request's workflow is signalled")

	status, _ = cancelOf("/async_request/zzzzzzzzzzzzzzzz")
	assert.Equal(t, http.StatusNotFound, status)
	_, otherModel := f.otherWorkspace()
	other := f.accepted("production", `{"model_input":3}`)
	status, _ = cancelOf("/models/" + otherModel + "/async_request/" + other)
	assert.Equal(t, http.StatusNotFound, status)
	assert.Equal(t, modelplane.AsyncQueued, f.asyncRow(other).Status, "a path naming another model cancels nothing")
}

func TestAsyncQueueStatus_Counts(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
	d := f.servingDeployment(newServer(t, "m", testmodel.Options{}).addr())
	ctx := context.Background()
	var ids []string
	for i := range 3 {
		ids = append(ids, f.accepted("production", `{"model_input":`+string(rune('1'+i))+`}`))
	}
	claim, err := store.ClaimAsyncRequest(ctx, f.db, ids[0])
	require.NoError(t, err)
	require.True(t, claim.Claimed)

	want := map[string]any{"model_id": f.model.ID, "deployment_id": d.ID,
		"num_queued_requests": 2.0, "num_in_progress_requests": 1.0}
	for _, target := range []string{"production", "environments/production", "deployment/" + d.ID} {
		a := f.do(f.request(http.MethodGet, "/models/"+f.model.ID+"/"+target+"/async_queue_status", nil))
		require.Equal(t, http.StatusOK, a.status, a.body)
		var got map[string]any
		require.NoError(t, json.Unmarshal([]byte(a.body), &got))
		assert.Equal(t, want, got, target)
	}
	a := f.do(f.request(http.MethodPost, "/models/"+f.model.ID+"/production/async_queue_status", nil))
	require.Equal(t, http.StatusMethodNotAllowed, a.status)
	assert.Equal(t, "GET", a.header.Get("Allow"))

	t.Run("queue size gauge", func(t *testing.T) {
		idle := f.deployment("", false)
		require.Eventually(t, func() bool {
			_, ok := findSeries(t, f, "modelplane_async_queue_size", idle.ID)
			return ok
		}, 2*time.Second, 10*time.Millisecond, "a deployment with nothing queued reads 0")
		assert.Equal(t, 2.0, gauge(t, f, "modelplane_async_queue_size", d.ID))
		assert.Equal(t, 0.0, gauge(t, f, "modelplane_async_queue_size", idle.ID))
		require.Equal(t, http.StatusOK, f.do(f.request(http.MethodDelete, "/async_request/"+ids[1], nil)).status)
		assert.Equal(t, 1.0, gauge(t, f, "modelplane_async_queue_size", d.ID), "read at each scrape")
		require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, f.model.ID, idle.ID))
		require.Eventually(t, func() bool {
			_, ok := findSeries(t, f, "modelplane_async_queue_size", idle.ID)
			return !ok
		}, 2*time.Second, 10*time.Millisecond, "a deleted deployment's series goes away")
	})
}

// findSeries reports whether the metric has a series for the deployment, and its gauge value.
func findSeries(t *testing.T, f *fixture, name, deploymentID string) (float64, bool) {
	t.Helper()
	mfs, err := f.reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "deployment_id" && l.GetValue() == deploymentID {
					return m.GetGauge().GetValue(), true
				}
			}
		}
	}
	return 0, false
}

func TestAsyncPredict_WorkspaceQuotaLimitsOpenRequests(t *testing.T) {
	f := newFixture(t, gateway.Options{MaxAsyncAttempts: -1})
	f.servingDeployment(newServer(t, "m", testmodel.Options{}).addr())
	q := store.DefaultQuotas()
	q.AsyncRequests = 1
	require.NoError(t, store.SetWorkspaceQuotas(context.Background(), f.db, f.model.WorkspaceID, q))

	first := f.accepted("production", `{"model_input":1}`)
	a := f.asyncPredict("production", `{"model_input":2}`)
	require.Equal(t, http.StatusTooManyRequests, a.status, a.body)
	assert.Equal(t, "10", a.header.Get("Retry-After"))
	assert.Contains(t, errorMessage(t, a), "already has 1 async requests queued or in progress, as many as the workspace's async_requests quota (1) allows")

	require.Equal(t, http.StatusOK, f.do(f.request(http.MethodDelete, "/async_request/"+first, nil)).status)
	f.accepted("production", `{"model_input":2}`) // a finished request frees its place
}
