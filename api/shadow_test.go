package api_test

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

// shadowModel is a model whose production serves one deployment, with another to shadow it.
type shadowModel struct {
	m                store.Model
	auth, base       string
	serving, shadow  string
	changedAtOfProd  func() time.Time
	writeFigures     func(run string, s store.ShadowStats)
	deploymentOfTest func(name string) string
}

func newShadowModel(t *testing.T, f *fixture) *shadowModel {
	t.Helper()
	ctx := context.Background()
	m, _, key := f.workspace(t)
	s := &shadowModel{m: m, auth: "Api-Key " + key, base: "/v1/models/" + m.ID + "/environments/production"}
	s.deploymentOfTest = func(name string) string {
		d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: m.ID, WorkspaceID: m.WorkspaceID, Name: name})
		require.NoError(t, err)
		require.NoError(t, store.SetDeploymentStatus(ctx, f.db, d.ID, "ACTIVE", ""))
		return d.ID
	}
	s.serving, s.shadow = s.deploymentOfTest("serving"), s.deploymentOfTest("shadow")
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, m.ID, modelplane.ProductionEnvironment, s.serving))
	s.changedAtOfProd = func() time.Time {
		e, err := store.EnvironmentByName(ctx, f.db, m.ID, modelplane.ProductionEnvironment)
		require.NoError(t, err)
		return e.ShadowChangedAt
	}
	s.writeFigures = func(run string, st store.ShadowStats) {
		st.ModelID, st.Environment, st.ChangedAt, st.GatewayRun = m.ID, modelplane.ProductionEnvironment, s.changedAtOfProd(), run
		require.NoError(t, store.WriteShadowStats(ctx, f.db, []store.ShadowStats{st}))
	}
	return s
}

func TestShadowSettings_PatchRefusesBadSettingsNamingTheField(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := newShadowModel(t, f)

	otherModel, err := store.CreateModel(ctx, f.db, s.m.WorkspaceID, "other")
	require.NoError(t, err)
	otherModels, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: otherModel.ID, WorkspaceID: s.m.WorkspaceID})
	require.NoError(t, err)
	deleted := s.deploymentOfTest("gone")
	require.NoError(t, store.MarkDeploymentDeleted(ctx, f.db, s.m.ID, deleted))
	foreign, _, _ := f.workspace(t)
	foreignDep, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: foreign.ID, WorkspaceID: foreign.WorkspaceID})
	require.NoError(t, err)

	for _, tt := range []struct {
		name, body string
		want       int
		field      string
	}{
		{"percent above 100", `{"percent": 101}`, http.StatusBadRequest, "shadow_settings.percent"},
		{"negative percent", `{"percent": -1}`, http.StatusBadRequest, "shadow_settings.percent"},
		{"percent as text", `{"percent": "50"}`, http.StatusBadRequest, "shadow_settings.percent"},
		{"fractional percent", `{"percent": 2.5}`, http.StatusBadRequest, "shadow_settings.percent"},
		{"unknown compare", `{"compare": "xml"}`, http.StatusBadRequest, "shadow_settings.compare"},
		{"negative tolerance", `{"numeric_tolerance": -0.1}`, http.StatusBadRequest, "shadow_settings.numeric_tolerance"},
		{"tolerance as text", `{"numeric_tolerance": "0.1"}`, http.StatusBadRequest, "shadow_settings.numeric_tolerance"},
		{"deployment ID a number", `{"deployment_id": 5}`, http.StatusBadRequest, "shadow_settings.deployment_id"},
		{"deployment ID empty", `{"deployment_id": ""}`, http.StatusBadRequest, "shadow_settings.deployment_id"},
		{"unknown field", `{"deployment": "x"}`, http.StatusBadRequest, "shadow_settings.deployment"},
		{"not an object", `"on"`, http.StatusBadRequest, "shadow_settings"},
		{"unknown deployment", `{"deployment_id": "nosuchid"}`, http.StatusNotFound, "shadow_settings.deployment_id"},
		{"another workspace's deployment", `{"deployment_id": "` + foreignDep.ID + `"}`, http.StatusNotFound, "shadow_settings.deployment_id"},
		{"another model's deployment", `{"deployment_id": "` + otherModels.ID + `"}`, http.StatusUnprocessableEntity, "shadow_settings.deployment_id"},
		{"deleted deployment", `{"deployment_id": "` + deleted + `"}`, http.StatusUnprocessableEntity, "shadow_settings.deployment_id"},
		{"the serving deployment", `{"deployment_id": "` + s.serving + `"}`, http.StatusUnprocessableEntity, "shadow_settings.deployment_id"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := f.send(t, http.MethodPatch, s.base, s.auth, `{"shadow_settings": `+tt.body+`}`)
			require.Equal(t, tt.want, r.Status, "%v", r.Body)
			require.Contains(t, message(r), tt.field)
		})
	}
	e, err := store.EnvironmentByName(ctx, f.db, s.m.ID, modelplane.ProductionEnvironment)
	require.NoError(t, err)
	require.Nil(t, e.ShadowSettings.DeploymentID, "no refused patch names a shadow")

	// Another workspace's key cannot see the model at all.
	_, _, otherKey := f.workspace(t)
	r := f.send(t, http.MethodPatch, s.base, "Api-Key "+otherKey, `{"shadow_settings": {"deployment_id": "`+s.shadow+`"}}`)
	require.Equal(t, http.StatusNotFound, r.Status, "%v", r.Body)
}

func TestShadowSettings_PatchKeepsFieldsLeftOutAndAnswersThem(t *testing.T) {
	f := newFixture(t)
	s := newShadowModel(t, f)

	r := f.do(t, http.MethodGet, s.base, s.auth)
	require.Equal(t, map[string]any{"deployment_id": nil, "percent": 100.0, "compare": "json", "numeric_tolerance": 0.0},
		r.Body["shadow_settings"], "an environment without a shadow shows the defaults")

	before := s.changedAtOfProd()
	r = f.send(t, http.MethodPatch, s.base, s.auth, `{"shadow_settings": {"deployment_id": "`+s.shadow+`", "percent": 25, "compare": "none", "numeric_tolerance": 0.5}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, "ACCEPTED", r.Body["status"])
	require.Equal(t, map[string]any{"deployment_id": s.shadow, "percent": 25.0, "compare": "none", "numeric_tolerance": 0.5},
		r.Body["environment"].(map[string]any)["shadow_settings"])
	require.True(t, s.changedAtOfProd().After(before), "a change moves the time the figures count from")

	r = f.send(t, http.MethodPatch, s.base, s.auth, `{"shadow_settings": {"percent": 30}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"deployment_id": s.shadow, "percent": 30.0, "compare": "none", "numeric_tolerance": 0.5},
		r.Body["environment"].(map[string]any)["shadow_settings"], "fields left out keep their values")
	at := s.changedAtOfProd()
	r = f.send(t, http.MethodPatch, s.base, s.auth, `{"shadow_settings": {"percent": 30, "compare": null}}`)
	require.Equal(t, "UNCHANGED", r.Body["status"])
	require.Equal(t, at, s.changedAtOfProd(), "settings that stay the same keep their figures")

	r = f.send(t, http.MethodPatch, s.base, s.auth, `{"shadow_settings": {"deployment_id": null}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Nil(t, r.Body["environment"].(map[string]any)["shadow_settings"].(map[string]any)["deployment_id"], "null stops shadowing")
}

func TestShadowFigures_GetSumsEveryGatewaySinceTheSettingsChanged(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	s := newShadowModel(t, f)
	path := s.base + "/shadow"

	r := f.do(t, http.MethodGet, path, s.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"deployment_id": nil, "percent": 0.0, "copied": 0.0, "equal": 0.0, "different": 0.0,
		"errors": 0.0, "dropped": 0.0, "primary_p99_ms": 0.0, "shadow_p99_ms": 0.0}, r.Body, "no shadow: null and zeros")

	r = f.send(t, http.MethodPatch, s.base, s.auth, `{"shadow_settings": {"deployment_id": "`+s.shadow+`", "percent": 50}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	buckets := func(counts map[time.Duration]int64) []int64 {
		b := make([]int64, len(store.LatencyBounds)+1)
		for d, n := range counts {
			b[store.LatencyBucket(d)] += n
		}
		return b
	}
	s.writeFigures("gw-a@1", store.ShadowStats{Copied: 60, Equal: 50, Different: 6, Errors: 2, Dropped: 3,
		PrimaryLatency: buckets(map[time.Duration]int64{10 * time.Millisecond: 58}),
		ShadowLatency:  buckets(map[time.Duration]int64{20 * time.Millisecond: 58})})
	s.writeFigures("gw-b@1", store.ShadowStats{Copied: 40, Equal: 40, Dropped: 1,
		PrimaryLatency: buckets(map[time.Duration]int64{10 * time.Millisecond: 40}),
		ShadowLatency:  buckets(map[time.Duration]int64{200 * time.Millisecond: 40})})
	// A run writes its totals again: they replace its previous ones.
	s.writeFigures("gw-b@1", store.ShadowStats{Copied: 42, Equal: 42, Dropped: 1,
		PrimaryLatency: buckets(map[time.Duration]int64{10 * time.Millisecond: 42}),
		ShadowLatency:  buckets(map[time.Duration]int64{200 * time.Millisecond: 42})})
	// Totals counted under settings that are no longer the environment's are not written.
	require.NoError(t, store.WriteShadowStats(ctx, f.db, []store.ShadowStats{{ModelID: s.m.ID,
		Environment: modelplane.ProductionEnvironment, ChangedAt: s.changedAtOfProd().Add(-time.Hour), GatewayRun: "old@1", Copied: 1000}}))

	r = f.do(t, http.MethodGet, path, s.auth)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Equal(t, map[string]any{"deployment_id": s.shadow, "percent": 50.0, "copied": 102.0, "equal": 92.0, "different": 6.0,
		"errors": 2.0, "dropped": 4.0, "primary_p99_ms": 10.0, "shadow_p99_ms": 200.0}, r.Body)

	// New settings count from zero.
	r = f.send(t, http.MethodPatch, s.base, s.auth, `{"shadow_settings": {"percent": 10}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	r = f.do(t, http.MethodGet, path, s.auth)
	require.Equal(t, 0.0, r.Body["copied"], "%v", r.Body)
	require.Equal(t, 10.0, r.Body["percent"])

	require.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, "/v1/models/"+s.m.ID+"/environments/nope/shadow", s.auth).Status)
	require.Equal(t, http.StatusNotFound, f.do(t, http.MethodGet, "/v1/models/nosuchmodel/environments/production/shadow", s.auth).Status)
	_, _, otherKey := f.workspace(t)
	r = f.do(t, http.MethodGet, path, "Api-Key "+otherKey)
	require.Equal(t, http.StatusNotFound, r.Status, "another workspace's model reads as missing: %v", r.Body)
	require.Equal(t, http.StatusUnauthorized, f.do(t, http.MethodGet, path, "").Status)
}

func TestShadowGate_PromotingTheShadowNeedsAgreement(t *testing.T) {
	f := newFixture(t)
	s := newShadowModel(t, f)
	promote := func(id string) response {
		return f.send(t, http.MethodPost, s.base+"/promote", s.auth, `{"deployment_id": "`+id+`"}`)
	}

	for _, tt := range []struct{ body, field string }{
		{`{"shadow_min_agreement": 101}`, "promotion_settings.shadow_min_agreement"},
		{`{"shadow_min_agreement": -1}`, "promotion_settings.shadow_min_agreement"},
		{`{"shadow_min_agreement": "high"}`, "promotion_settings.shadow_min_agreement"},
		{`{"shadow_min_copies": 0}`, "promotion_settings.shadow_min_copies"},
		{`{"shadow_min_copies": 1.5}`, "promotion_settings.shadow_min_copies"},
	} {
		r := f.send(t, http.MethodPatch, s.base, s.auth, `{"promotion_settings": `+tt.body+`}`)
		require.Equal(t, http.StatusBadRequest, r.Status, "%s: %v", tt.body, r.Body)
		require.Contains(t, message(r), tt.field)
	}
	r := f.send(t, http.MethodPatch, s.base, s.auth, `{"promotion_settings": {"shadow_min_agreement": 95, "shadow_min_copies": 10},
		"shadow_settings": {"deployment_id": "`+s.shadow+`"}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	ps := r.Body["environment"].(map[string]any)["promotion_settings"].(map[string]any)
	require.Equal(t, 95.0, ps["shadow_min_agreement"])
	require.Equal(t, 10.0, ps["shadow_min_copies"])

	r = promote(s.shadow)
	require.Equal(t, http.StatusConflict, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "0.00% agreement over 0 compared shadow copies")
	require.Contains(t, message(r), "shadow_min_copies asks for at least 10")

	s.writeFigures("gw@1", store.ShadowStats{Copied: 20, Equal: 18, Different: 1, Errors: 1})
	r = promote(s.shadow)
	require.Equal(t, http.StatusConflict, r.Status, "%v", r.Body)
	require.Contains(t, message(r), "90.00% agreement over 20 compared shadow copies (18 equal, 1 different, 1 errors)")
	require.Contains(t, message(r), "shadow_min_agreement asks for at least 95%")

	s.writeFigures("gw@1", store.ShadowStats{Copied: 20, Equal: 20})
	r = promote(s.shadow)
	require.NotEqual(t, http.StatusConflict, r.Status, "enough copies agreed: %v", r.Body)
	require.Contains(t, message(r), "Temporal is not connected", "the promotion goes on to start")

	// Another deployment is not gated by the shadow's figures.
	s.writeFigures("gw@1", store.ShadowStats{Copied: 20, Equal: 1, Different: 19})
	other := s.deploymentOfTest("other")
	require.Contains(t, message(promote(other)), "Temporal is not connected")
	require.Equal(t, http.StatusConflict, promote(s.shadow).Status)

	// null turns the gate off.
	r = f.send(t, http.MethodPatch, s.base, s.auth, `{"promotion_settings": {"shadow_min_agreement": null}}`)
	require.Equal(t, http.StatusOK, r.Status, "%v", r.Body)
	require.Nil(t, r.Body["environment"].(map[string]any)["promotion_settings"].(map[string]any)["shadow_min_agreement"])
	require.Contains(t, message(promote(s.shadow)), "Temporal is not connected")
}
