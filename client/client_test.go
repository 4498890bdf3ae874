package client_test

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "client", true, &dbURL)) }

// fixture is the real API on a fresh blob store, served over HTTP, with one workspace that
// has a model and a key.
type fixture struct {
	db    *sqlx.DB
	url   string
	model store.Model
	key   string
	c     *client.Client
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, url := apitest.Serve(t, dbURL)
	m, _, key := apitest.Workspace(t, db, "ws")
	return &fixture{db: db, url: url, model: m, key: key, c: client.New(url+"/", key)}
}

// apiError asserts err is an API answer and returns it.
func apiError(t *testing.T, err error) *client.Error {
	t.Helper()
	var e *client.Error
	require.True(t, errors.As(err, &e), "want a *client.Error, got %T: %v", err, err)
	return e
}

func TestModels_ListAndGetReturnTheWorkspacesModel(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	models, err := f.c.Models(ctx)
	require.NoError(t, err)
	require.Len(t, models, 1)
	require.Equal(t, f.model.ID, models[0].ID)
	require.Equal(t, "echo", models[0].Name)
	require.Nil(t, models[0].ProductionDeploymentID)

	m, err := f.c.Model(ctx, f.model.ID)
	require.NoError(t, err)
	require.Equal(t, models[0], m)
	require.False(t, m.CreatedAt.IsZero(), "created_at must be decoded")
}

func TestModels_EmptyWorkspaceIsAnEmptyListNotNil(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	ws, _, err := store.EnsureWorkspace(ctx, f.db, "ws-"+modelplane.NewID(6))
	require.NoError(t, err)
	_, key, err := apikey.Create(ctx, f.db, ws.ID, "empty", false)
	require.NoError(t, err)

	models, err := client.New(f.url, key).Models(ctx)
	require.NoError(t, err)
	require.NotNil(t, models, "an empty list must encode as [] for callers that print it")
	require.Empty(t, models)
}

func TestDeployments_ListAndGetByIDAndByRole(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	dev, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID, IsDevelopment: true})
	require.NoError(t, err)
	prod, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID,
		AutoscalingSettings: settings.DefaultAutoscalingSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.model.ID, modelplane.ProductionEnvironment, prod.ID))

	list, err := f.c.Deployments(ctx, f.model.ID)
	require.NoError(t, err)
	ids := []string{}
	for _, d := range list {
		ids = append(ids, d.ID)
	}
	require.ElementsMatch(t, []string{dev.ID, prod.ID}, ids)

	got, err := f.c.Deployment(ctx, f.model.ID, "production")
	require.NoError(t, err)
	require.Equal(t, prod.ID, got.ID)
	require.True(t, got.IsProduction)
	require.Equal(t, "deployment-1", got.Name)
	require.NotNil(t, got.Environment)
	require.Equal(t, "production", *got.Environment)
	require.Equal(t, modelplane.DeploymentBuilding, got.Status)

	got, err = f.c.Deployment(ctx, f.model.ID, "development")
	require.NoError(t, err)
	require.Equal(t, dev.ID, got.ID)
	require.True(t, got.IsDevelopment)

	got, err = f.c.Deployment(ctx, f.model.ID, dev.ID)
	require.NoError(t, err)
	require.Equal(t, "development", got.Name)
}

func TestEnvironments_ListAndGetWithCurrentDeployment(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID})
	require.NoError(t, err)
	_, err = store.CreateEnvironment(ctx, f.db, store.Environment{ModelID: f.model.ID, Name: "staging",
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.model.ID, "staging", d.ID))

	envs, err := f.c.Environments(ctx, f.model.ID)
	require.NoError(t, err)
	require.Len(t, envs, 2)
	require.Equal(t, "production", envs[0].Name, "production is listed first")
	require.Nil(t, envs[0].CurrentDeployment)
	require.Equal(t, "staging", envs[1].Name)

	env, err := f.c.Environment(ctx, f.model.ID, "staging")
	require.NoError(t, err)
	require.NotNil(t, env.CurrentDeployment)
	require.Equal(t, d.ID, env.CurrentDeployment.ID)
	require.Nil(t, env.CandidateDeployment)
	require.Nil(t, env.InProgressPromotion)
	require.Equal(t, 600, env.PromotionSettings.RampUpDurationSeconds)
}

func TestErrors_BadKeyIs401WithTheAPIsCode(t *testing.T) {
	f := newFixture(t)
	for _, key := range []string{"", "not-a-key", "mp_xxxxxxxxxxxx_aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"} {
		_, err := client.New(f.url, key).Models(context.Background())
		e := apiError(t, err)
		require.Equal(t, http.StatusUnauthorized, e.Status, "key %q", key)
		require.Equal(t, "unauthenticated", e.Code)
		require.NotEmpty(t, e.Message)
		require.Equal(t, e.Message+" (HTTP 401 unauthenticated)", e.Error())
	}
}

func TestErrors_UnknownModelIs404(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	calls := map[string]func() error{
		"Model":        func() error { _, err := f.c.Model(ctx, "zzzzzzzz"); return err },
		"Deployments":  func() error { _, err := f.c.Deployments(ctx, "zzzzzzzz"); return err },
		"Deployment":   func() error { _, err := f.c.Deployment(ctx, f.model.ID, "production"); return err },
		"Environments": func() error { _, err := f.c.Environments(ctx, "zzzzzzzz"); return err },
		"Environment":  func() error { _, err := f.c.Environment(ctx, f.model.ID, "staging"); return err },
	}
	for name, call := range calls {
		e := apiError(t, call())
		require.Equal(t, http.StatusNotFound, e.Status, name)
		require.Equal(t, "not_found", e.Code, name)
		require.True(t, client.IsStatus(e, http.StatusNotFound), name)
	}
	_, err := f.c.Model(ctx, "zzzzzzzz")
	require.Contains(t, err.Error(), `model "zzzzzzzz" not found`)
}

func TestErrors_SegmentsAreEscapedNotRouted(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	// Unescaped, "x/deployments" would reach another route and ".." the model list.
	for _, id := range []string{f.model.ID + "/deployments", "..", "a?b=c"} {
		_, err := f.c.Model(ctx, id)
		e := apiError(t, err)
		require.Equal(t, http.StatusNotFound, e.Status, "model ID %q", id)
		require.Contains(t, e.Message, "model", "model ID %q must reach the model route, got %q", id, e.Message)
	}
	_, err := f.c.Deployments(ctx, "")
	require.ErrorContains(t, err, "may not be empty")
}

func TestErrors_AnswerNotInTheErrorShapeKeepsItsStatus(t *testing.T) {
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		w.WriteHeader(http.StatusBadGateway)
		_, _ = io.WriteString(w, "\n<html>bad gateway</html>\n")
	}))
	defer proxy.Close()
	_, err := client.New(proxy.URL, "k").Models(context.Background())
	e := apiError(t, err)
	require.Equal(t, http.StatusBadGateway, e.Status)
	require.Empty(t, e.Code)
	require.Equal(t, "<html>bad gateway</html> (HTTP 502)", e.Error())
}

func TestClient_SendsTheKeyAsApiKey(t *testing.T) {
	var got string
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = r.Header.Get("Authorization")
		_, _ = io.WriteString(w, `{"models": []}`)
	}))
	defer srv.Close()
	_, err := client.New(srv.URL, "mp_abc").Models(context.Background())
	require.NoError(t, err)
	require.Equal(t, "Api-Key mp_abc", got)
}

func TestUploadArchive_StreamsTheEchoExampleAndIsIdempotent(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()

	// Pack straight into the request body: nothing holds the whole package in memory.
	pr, pw := io.Pipe()
	sums := make(chan string, 1)
	var packed bytes.Buffer
	go func() {
		sum, err := modelpkg.Pack("../examples/models/echo", io.MultiWriter(pw, &packed))
		sums <- sum
		pw.CloseWithError(err)
	}()
	a, err := f.c.UploadArchive(ctx, pr)
	require.NoError(t, err)
	require.Equal(t, "sha256:"+<-sums, a.ID, "the ID is the package's content address")
	require.EqualValues(t, packed.Len(), a.Size)

	again, err := f.c.UploadArchive(ctx, bytes.NewReader(packed.Bytes()))
	require.NoError(t, err)
	require.Equal(t, a, again, "the same bytes get the same answer")
}

func TestUploadArchive_BadArchiveIs400(t *testing.T) {
	f := newFixture(t)
	_, err := f.c.UploadArchive(context.Background(), bytes.NewReader([]byte("not a tar.gz")))
	e := apiError(t, err)
	require.Equal(t, http.StatusBadRequest, e.Status, e.Error())
	require.Equal(t, "invalid_argument", e.Code)
	require.Contains(t, e.Message, "invalid model package")
}
