package client_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
)

// scripted is a fake API for routes the real one may not serve yet: it checks one request's
// method, path and JSON body and answers fixed JSON.
type scripted struct {
	method, path, body string // body "" means no body is expected, unless raw is set
	raw                string // a body that is not JSON (an upload), compared as it is
	status             int
	answer             string
}

func (s scripted) client(t *testing.T) *client.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		if r.Method != s.method || r.URL.EscapedPath() != s.path {
			t.Errorf("want %s %s, got %s %s", s.method, s.path, r.Method, r.URL.EscapedPath())
		}
		if r.Header.Get("Authorization") != "Api-Key k" {
			t.Errorf("want the key in Authorization, got %q", r.Header.Get("Authorization"))
		}
		if s.raw != "" {
			require.Equal(t, "application/gzip", r.Header.Get("Content-Type"))
			require.Equal(t, s.raw, string(b))
		} else if s.body == "" {
			if len(b) != 0 {
				t.Errorf("want no body, got %s", b)
			}
		} else {
			require.Equal(t, "application/json", r.Header.Get("Content-Type"))
			require.JSONEq(t, s.body, string(b))
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(s.status)
		_, _ = io.WriteString(w, s.answer)
	}))
	t.Cleanup(srv.Close)
	return client.New(srv.URL, "k")
}

const (
	modelJSON      = `{"id":"q4z8m2xw","name":"echo","deployments_count":1,"production_deployment_id":null,"development_deployment_id":null,"instance_type_name":"cpu","created_at":"2026-01-02T03:04:05Z"}`
	deploymentJSON = `{"id":"d1d1d1d1","name":"deployment-1","model_id":"q4z8m2xw","status":"BUILDING","created_at":"2026-01-02T03:04:05Z","environment":null}`
)

func TestCreateModel_SendsTheSpecShapeAndReturnsModelAndDeployment(t *testing.T) {
	c := scripted{method: "POST", path: "/v1/models", status: 200,
		body: `{"source":{"kind":"model_archive","name":"echo","s3_key":"sha256:ab",
			"deployment":{"config":{"model_name":"echo"},"deployment_name":"first","environment_name":"production",
			"labels":{"team":"ml"},"deploy_timeout_minutes":30}}}`,
		answer: `{"model":` + modelJSON + `,"deployment":` + deploymentJSON + `}`}.client(t)
	timeout := 30
	m, d, err := c.CreateModel(context.Background(), apiv1.CreateModelRequest{
		Source: apiv1.ModelArchiveSource{Name: "echo", ArchiveID: "sha256:ab",
			Deployment: apiv1.DeploymentArchivePayload{Config: map[string]any{"model_name": "echo"}, Name: "first",
				Labels: map[string]any{"team": "ml"}, DeployTimeoutMinutes: &timeout}},
		Environment: "production",
	})
	require.NoError(t, err)
	require.Equal(t, "q4z8m2xw", m.ID)
	require.Equal(t, "d1d1d1d1", d.ID)
	require.Equal(t, modelplane.DeploymentBuilding, d.Status)
}

func TestCreateDeployment_DevelopmentIsSentAsIsDevelopment(t *testing.T) {
	c := scripted{method: "POST", path: "/v1/models/q4z8m2xw/deployments", status: 200,
		body:   `{"source":{"kind":"model_archive","s3_key":"upl_abc","deployment":{"config":{"model_name":"echo"},"is_development":true}}}`,
		answer: `{"model":` + modelJSON + `,"deployment":` + deploymentJSON + `}`}.client(t)
	m, d, err := c.CreateDeployment(context.Background(), "q4z8m2xw", apiv1.CreateDeploymentRequest{
		Source:      apiv1.DeploymentArchiveSource{S3Key: "upl_abc", Deployment: apiv1.DeploymentArchivePayload{Config: map[string]any{"model_name": "echo"}}},
		Development: true,
	})
	require.NoError(t, err)
	require.Equal(t, "echo", m.Name)
	require.Equal(t, "deployment-1", d.Name)
}

func TestPackagePayload_IsTheConfigAndItsText(t *testing.T) {
	text := "# comment\nmodel_name: echo\nenvironment_variables: {A: b}\n"
	cfg, err := modelpkg.ParseConfig([]byte(text))
	require.NoError(t, err)
	p, err := client.PackagePayload(cfg)
	require.NoError(t, err)
	require.Equal(t, text, *p.RawConfig)
	require.Equal(t, "echo", p.Config["model_name"])
	require.Equal(t, "Model", p.Config["model_class_name"], "the config is sent with its defaults, as it runs")
	require.Equal(t, map[string]any{"A": "b"}, p.Config["environment_variables"])
}

func TestPrepareModelUploadAndUploadPrepared(t *testing.T) {
	key := "upl_k1"
	c := scripted{method: "POST", path: "/v1/prepare_model_upload", status: 200,
		body:   `{"deployment":{"config":{"model_name":"echo"}},"name":"echo"}`,
		answer: `{"creds":null,"s3_bucket":null,"s3_key":"upl_k1","s3_region":null,"upload_url":"http://elsewhere/v1/uploads/upl_k1"}`}.client(t)
	got, err := c.PrepareModelUpload(context.Background(), apiv1.PrepareModelUploadRequest{
		Name: "echo", Deployment: apiv1.DeploymentArchivePayload{Config: map[string]any{"model_name": "echo"}}})
	require.NoError(t, err)
	require.Equal(t, key, *got.S3Key)
	require.Nil(t, got.Creds)

	c = scripted{method: "PUT", path: "/v1/uploads/upl_k1", status: 200, raw: "tar.gz bytes",
		answer: `{"id":"sha256:ab","size":12}`}.client(t)
	a, err := c.UploadPrepared(context.Background(), key, strings.NewReader("tar.gz bytes"))
	require.NoError(t, err)
	require.Equal(t, "sha256:ab", a.ID)
}

func TestDeploymentActions_CallTheirRoutes(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name string
		req  scripted
		call func(c *client.Client) error
	}{
		{"activate", scripted{method: "POST", path: "/v1/models/m1/deployments/d1/activate", status: 200, answer: `{"success":true}`},
			func(c *client.Client) error { return c.ActivateDeployment(ctx, "m1", "d1") }},
		{"deactivate", scripted{method: "POST", path: "/v1/models/m1/deployments/development/deactivate", status: 200, answer: `{"success":true}`},
			func(c *client.Client) error { return c.DeactivateDeployment(ctx, "m1", "development") }},
		{"delete deployment", scripted{method: "DELETE", path: "/v1/models/m1/deployments/d1", status: 200, answer: `{"id":"d1","deleted":true,"model_id":"m1"}`},
			func(c *client.Client) error { return c.DeleteDeployment(ctx, "m1", "d1") }},
		{"delete model", scripted{method: "DELETE", path: "/v1/models/m1", status: 200, answer: `{"id":"m1","deleted":true}`},
			func(c *client.Client) error { return c.DeleteModel(ctx, "m1") }},
		{"retry", scripted{method: "POST", path: "/v1/models/m1/deployments/d1/retry", status: 200,
			answer: `{"retried":false,"reason":"not failed","deployment":` + deploymentJSON + `}`},
			func(c *client.Client) error {
				r, err := c.RetryDeployment(ctx, "m1", "d1")
				if err == nil && (r.Retried || r.Reason == nil || *r.Reason != "not failed" || r.Deployment.ID != "d1d1d1d1") {
					return fmt.Errorf("answer read as %+v", r)
				}
				return err
			}},
		{"terminate replica", scripted{method: "DELETE", path: "/v1/models/m1/deployments/d1/replicas/r1", status: 200, answer: `{"success":true}`},
			func(c *client.Client) error { return c.TerminateReplica(ctx, "m1", "d1", "r1") }},
		{"backpressure", scripted{method: "PATCH", path: "/v1/models/m1/deployments/d1/request_backpressure_settings", status: 200,
			body: `{"policy":null}`, answer: `{"policy":null}`},
			func(c *client.Client) error { _, err := c.SetRequestBackpressure(ctx, "m1", "d1", nil); return err }},
		{"config", scripted{method: "GET", path: "/v1/models/m1/deployments/d1/config", status: 200,
			answer: `{"config":{"model_name":"echo"},"raw_config":"model_name: echo\n"}`},
			func(c *client.Client) error {
				cfg, err := c.DeploymentConfig(ctx, "m1", "d1")
				if err == nil && (cfg.RawConfig == nil || cfg.Config["model_name"] != "echo") {
					return fmt.Errorf("answer read as %+v", cfg)
				}
				return err
			}},
		{"download", scripted{method: "GET", path: "/v1/models/m1/deployments/d1/download", status: 200,
			answer: `{"download_url":"http://x/v1/downloads/t"}`},
			func(c *client.Client) error {
				u, err := c.DeploymentDownloadURL(ctx, "m1", "d1")
				if err == nil && u != "http://x/v1/downloads/t" {
					return fmt.Errorf("url read as %q", u)
				}
				return err
			}},
		{"patches state", scripted{method: "GET", path: "/v1/models/m1/deployments/development/patches/state", status: 200,
			answer: `{"running_patch_point":{"content_hashes":{},"config":"","requirements":[],"hash":"h"},"pending_patch_point":null}`},
			func(c *client.Client) error { _, err := c.PatchesState(ctx, "m1"); return err }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, tc.call(tc.req.client(t)))
		})
	}
}

func TestPromoteDeployment_SendsScaleDownPreviousProduction(t *testing.T) {
	c := scripted{method: "POST", path: "/v1/models/m1/deployments/d1d1d1d1/promote", status: 200,
		body: `{"scale_down_previous_production":true}`, answer: deploymentJSON}.client(t)
	d, err := c.PromoteDeployment(context.Background(), "m1", "d1d1d1d1", true)
	require.NoError(t, err)
	require.Equal(t, "d1d1d1d1", d.ID)
}

func TestPromoteToEnvironment_SendsTheDeploymentAndScaleDown(t *testing.T) {
	c := scripted{method: "POST", path: "/v1/models/m1/environments/staging/promote", status: 200,
		body: `{"deployment_id":"d1d1d1d1","scale_down_previous_deployment":false}`, answer: deploymentJSON}.client(t)
	d, err := c.PromoteToEnvironment(context.Background(), "m1", "staging", "d1d1d1d1", false)
	require.NoError(t, err)
	require.Equal(t, "deployment-1", d.Name)
}

func TestPromoteToEnvironment_ConflictIsAnErrorWithStatusAndCode(t *testing.T) {
	c := scripted{method: "POST", path: "/v1/models/m1/environments/staging/promote", status: 409,
		body:   `{"deployment_id":"d1","scale_down_previous_deployment":true}`,
		answer: `{"error":{"code":"conflict","message":"a promotion of staging is already running"}}`}.client(t)
	_, err := c.PromoteToEnvironment(context.Background(), "m1", "staging", "d1", true)
	e := apiError(t, err)
	require.Equal(t, 409, e.Status)
	require.Equal(t, "conflict", e.Code)
	require.True(t, client.IsStatus(err, 409))
}

func TestDeleteModel_EmptyIDIsRefusedBeforeSending(t *testing.T) {
	c := client.New("http://127.0.0.1:1", "k")
	require.Error(t, c.DeleteModel(context.Background(), ""))
}

func TestWaitActive_StopsAtAFailureStatusWithItsError(t *testing.T) {
	statuses := []string{"BUILDING", "DEPLOYING", "DEPLOY_FAILED"}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := statuses[0]
		statuses = statuses[1:]
		_, _ = io.WriteString(w, `{"id":"d1","name":"deployment-1","status":"`+s+`"}`)
	}))
	defer srv.Close()
	var seen []modelplane.DeploymentStatus
	d, err := client.New(srv.URL, "k").WaitActive(context.Background(), "m1", "d1", time.Millisecond,
		func(d apiv1.DeploymentV1) { seen = append(seen, d.Status) })
	var failed *client.DeploymentFailedError
	require.ErrorAs(t, err, &failed)
	require.Equal(t, modelplane.DeploymentDeployFailed, d.Status)
	require.Equal(t, []modelplane.DeploymentStatus{"BUILDING", "DEPLOYING", "DEPLOY_FAILED"}, seen)
}

func TestWaitPromoted_EndsWhenTheDeploymentIsCurrentAndNothingIsInFlight(t *testing.T) {
	answers := []string{
		`{"name":"staging","current_deployment":{"id":"old"},"in_progress_promotion":{"status":"RAMPING_UP","percent_traffic_to_new_version":20}}`,
		`{"name":"staging","current_deployment":{"id":"d1"},"in_progress_promotion":{"status":"RELEASING","percent_traffic_to_new_version":100}}`,
		`{"name":"staging","current_deployment":{"id":"d1"},"in_progress_promotion":null}`,
	}
	calls := 0
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		require.Equal(t, "/v1/models/m1/environments/staging", r.URL.Path)
		_, _ = io.WriteString(w, answers[calls])
		calls++
	}))
	defer srv.Close()
	e, err := client.New(srv.URL, "k").WaitPromoted(context.Background(), "m1", "staging", "d1", time.Millisecond, nil)
	require.NoError(t, err)
	require.Equal(t, "d1", e.CurrentDeployment.ID)
	require.Equal(t, 3, calls)
}

func TestWaitPromoted_FailedPromotionIsAnErrorWithItsMessage(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, `{"name":"staging","current_deployment":{"id":"old"},
			"in_progress_promotion":{"status":"FAILED","error_message":"error rate rose by 5%"}}`)
	}))
	defer srv.Close()
	_, err := client.New(srv.URL, "k").WaitPromoted(context.Background(), "m1", "staging", "d1", time.Millisecond, nil)
	require.EqualError(t, err, "promotion to staging FAILED: error rate rose by 5%")
}
