package settings

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPatchShadow_SetsKeepsAndStops(t *testing.T) {
	id, other := "abcd1234", "efgh5678"
	on := DefaultShadowSettings()
	on.DeploymentID = &id
	for _, tt := range []struct {
		name    string
		base    ShadowSettings
		patch   string
		want    func(*ShadowSettings)
		changed bool
	}{
		{"naming a deployment keeps the defaults", DefaultShadowSettings(), `{"deployment_id": "abcd1234"}`,
			func(s *ShadowSettings) { s.DeploymentID = &id }, true},
		{"another deployment", on, `{"deployment_id": "efgh5678"}`, func(s *ShadowSettings) { s.DeploymentID = &other }, true},
		{"null stops", on, `{"deployment_id": null}`, func(s *ShadowSettings) { s.DeploymentID = nil }, true},
		{"fields left out keep", on, `{"percent": 10, "numeric_tolerance": 0.25}`,
			func(s *ShadowSettings) { s.Percent, s.NumericTolerance = 10, 0.25 }, true},
		{"null compare keeps", on, `{"compare": null}`, func(*ShadowSettings) {}, false},
		{"the same ID is unchanged", on, `{"deployment_id": "abcd1234", "compare": "json"}`, func(*ShadowSettings) {}, false},
		{"edges", on, `{"percent": 0, "compare": "none", "numeric_tolerance": 0}`,
			func(s *ShadowSettings) { s.Percent, s.Compare = 0, ShadowCompareNone }, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			want := tt.base
			tt.want(&want)
			got, changed, err := PatchShadow("shadow_settings", tt.base, json.RawMessage(tt.patch))
			require.NoError(t, err)
			assert.True(t, want.Equal(got), "got %+v, want %+v", got, want)
			assert.Equal(t, tt.changed, changed)
		})
	}
}

func TestPatchShadow_RefusesNamingTheField(t *testing.T) {
	for patch, field := range map[string]string{
		`{"percent": 101}`:                "shadow_settings.percent",
		`{"percent": -1}`:                 "shadow_settings.percent",
		`{"compare": "bytes"}`:            "shadow_settings.compare",
		`{"compare": 1}`:                  "shadow_settings.compare",
		`{"numeric_tolerance": -1e-9}`:    "shadow_settings.numeric_tolerance",
		`{"numeric_tolerance": 1e400}`:    "shadow_settings.numeric_tolerance",
		`{"deployment_id": ["abcd1234"]}`: "shadow_settings.deployment_id",
		`{"deployment_id": true}`:         "shadow_settings.deployment_id",
		`{"deployment": "abcd1234"}`:      "shadow_settings.deployment",
		`[]`:                              "shadow_settings",
	} {
		base := DefaultShadowSettings()
		got, _, err := PatchShadow("shadow_settings", base, json.RawMessage(patch))
		var fe *FieldError
		require.ErrorAs(t, err, &fe, patch)
		assert.Equal(t, field, fe.Field, patch)
		assert.True(t, base.Equal(got), "%s: a refused patch answers the base", patch)
	}
}

func TestShadowSettings_ScanReadsTheEmptyColumnAsTheDefaults(t *testing.T) {
	var s ShadowSettings
	require.NoError(t, s.Scan([]byte(`{}`)))
	assert.True(t, DefaultShadowSettings().Equal(s), "got %+v", s)
	require.NoError(t, s.Scan([]byte(`{"deployment_id": "abcd1234", "percent": 5, "compare": "none", "numeric_tolerance": 0.5}`)))
	assert.Equal(t, "abcd1234", *s.DeploymentID)
	assert.Equal(t, 5, s.Percent)
}

func TestPromotionSettings_ShadowGate(t *testing.T) {
	var old PromotionSettings
	require.NoError(t, json.Unmarshal([]byte(`{"promotion_cleanup_strategy": "KEEP"}`), &old))
	assert.Equal(t, DefaultShadowMinCopies, old.ShadowMinCopies, "settings stored before the gate read with its default")
	_, set := old.ShadowMinAgreement.Get()
	assert.False(t, set, "and without the gate")

	ps, changed, err := PatchPromotion("promotion_settings", DefaultPromotionSettings(), json.RawMessage(`{"shadow_min_agreement": 99.5, "shadow_min_copies": 500}`))
	require.NoError(t, err)
	assert.True(t, changed)
	v, set := ps.ShadowMinAgreement.Get()
	assert.True(t, set)
	assert.Equal(t, 99.5, v)
	assert.Equal(t, 500, ps.ShadowMinCopies)
	b, err := json.Marshal(ps)
	require.NoError(t, err)
	assert.Contains(t, string(b), `"shadow_min_agreement":99.5,"shadow_min_copies":500`)

	off, changed, err := PatchPromotion("promotion_settings", ps, json.RawMessage(`{"shadow_min_agreement": null}`))
	require.NoError(t, err)
	assert.True(t, changed, "null turns the gate off")
	_, set = off.ShadowMinAgreement.Get()
	assert.False(t, set)
	assert.Equal(t, 500, off.ShadowMinCopies)

	for patch, field := range map[string]string{
		`{"shadow_min_agreement": 100.5}`: "promotion_settings.shadow_min_agreement",
		`{"shadow_min_agreement": true}`:  "promotion_settings.shadow_min_agreement",
		`{"shadow_min_copies": 0}`:        "promotion_settings.shadow_min_copies",
		`{"shadow_min_copies": 1000001}`:  "promotion_settings.shadow_min_copies",
	} {
		_, _, err := PatchPromotion("promotion_settings", DefaultPromotionSettings(), json.RawMessage(patch))
		var fe *FieldError
		require.ErrorAs(t, err, &fe, patch)
		assert.Equal(t, field, fe.Field, patch)
	}
}
