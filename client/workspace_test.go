package client_test

import (
	"context"
	"net/http"
	"net/url"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

func TestAPIKeys_CreateListAndDeleteThroughTheClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	_, err := f.c.APIKeys(ctx)
	require.Equal(t, http.StatusForbidden, apiError(t, err).Status, "the fixture's key is no admin key")

	_, admin, err := apikey.Create(ctx, f.db, f.model.WorkspaceID, "admin", true)
	require.NoError(t, err)
	c := client.New(f.url, admin)
	name := "ci"
	text, err := c.CreateAPIKey(ctx, apiv1.CreateAPIKeyRequest{Name: &name, Type: apiv1.APIKeyPersonal})
	require.NoError(t, err)
	id, _, err := apikey.Parse(text)
	require.NoError(t, err)
	keys, err := c.APIKeys(ctx)
	require.NoError(t, err)
	require.Len(t, keys, 3)
	require.NoError(t, c.DeleteAPIKey(ctx, id))
	require.True(t, client.IsStatus(c.DeleteAPIKey(ctx, id), http.StatusNotFound))

	page, err := c.AuditLogs(ctx, url.Values{"event_type_groups": {"API_KEYS"}})
	require.NoError(t, err)
	require.Len(t, page.Items, 2)
	require.Equal(t, apiv1.AuditAPIKeyDeleted, page.Items[0].EventType)
	require.False(t, page.Pagination.HasMore)
}

func TestMetricsAndInstanceTypes_ThroughTheClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	d, err := store.CreateDeployment(ctx, f.db, store.NewDeployment{ModelID: f.model.ID, WorkspaceID: f.model.WorkspaceID})
	require.NoError(t, err)
	require.NoError(t, store.SetEnvironmentDeployment(ctx, f.db, f.model.ID, modelplane.ProductionEnvironment, d.ID))

	m, err := f.c.DeploymentMetrics(ctx, f.model.ID, "production", url.Values{"mode": {"SUMMARY"}})
	require.NoError(t, err)
	require.Equal(t, apiv1.MetricModeSummary, m.Mode)
	require.Len(t, m.MetricDescriptors, 3)
	require.Len(t, m.MetricValues, 1)
	m, err = f.c.EnvironmentMetrics(ctx, f.model.ID, "production", nil)
	require.NoError(t, err)
	require.Equal(t, apiv1.MetricModeCurrent, m.Mode)
	_, err = f.c.EnvironmentMetrics(ctx, f.model.ID, "production", url.Values{"mode": {"SOMETIMES"}})
	require.Equal(t, http.StatusBadRequest, apiError(t, err).Status)

	types, err := f.c.InstanceTypes(ctx)
	require.NoError(t, err)
	require.NotNil(t, types)
}

func TestEnvironmentsAndModelAuditLogs_ThroughTheClient(t *testing.T) {
	f := newFixture(t)
	ctx := context.Background()
	i := func(v int) *int { return &v }
	tokens := 2048
	env, err := f.c.CreateEnvironment(ctx, f.model.ID, apiv1.CreateEnvironmentRequest{Name: "staging",
		AutoscalingSettings: &apiv1.UpdateAutoscalingSettingsRequest{MaxReplica: i(3), TargetInFlightTokens: &tokens}})
	require.NoError(t, err)
	require.Equal(t, "staging", env.Name)
	require.Equal(t, 3, env.AutoscalingSettings.MaxReplica)
	require.Equal(t, &tokens, env.AutoscalingSettings.TargetInFlightTokens.Ptr())

	tz := "Asia/Tokyo"
	yes := true
	up, err := f.c.UpdateEnvironment(ctx, f.model.ID, "staging", apiv1.UpdateEnvironmentRequest{
		PromotionSettings: &apiv1.UpdatePromotionSettingsRequest{RollingDeploy: &yes},
		AutoscalingScheduleSettings: &apiv1.UpdateAutoscalingScheduleSettingsRequest{Timezone: &tz,
			Schedules: []apiv1.AutoscalingScheduleUpsert{{Name: "nightly", Enabled: true, Cadence: settings.CadenceHourly,
				Weekdays: []settings.Weekday{"SATURDAY", "SUNDAY"}, StartMinute: 0, EndMinute: 15,
				AutoscalingSettings: settings.ScheduleAutoscalingSettings{MinReplica: 0, MaxReplica: 1}}}}})
	require.NoError(t, err)
	require.Equal(t, apiv1.SettingsAccepted, up.Status)
	require.True(t, up.Environment.PromotionSettings.RollingDeploy)
	require.NotNil(t, up.Environment.AutoscalingSchedules)
	require.Equal(t, &tz, up.Environment.AutoscalingSchedules.Timezone)
	require.Len(t, up.Environment.AutoscalingSchedules.Schedules, 1)
	require.Equal(t, "nightly", up.Environment.AutoscalingSchedules.Schedules[0].Name)
	up, err = f.c.UpdateEnvironment(ctx, f.model.ID, "staging", apiv1.UpdateEnvironmentRequest{})
	require.NoError(t, err)
	require.Equal(t, apiv1.SettingsUnchanged, up.Status)

	page, err := f.c.ModelAuditLogs(ctx, f.model.ID, url.Values{"limit": {"1"}})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	require.Equal(t, apiv1.AuditEnvironmentUpdated, page.Items[0].EventType)
	require.True(t, page.Pagination.HasMore)
	require.NotNil(t, page.Pagination.Cursor)
	page, err = f.c.ModelAuditLogs(ctx, f.model.ID, url.Values{"limit": {"1"}, "cursor": {*page.Pagination.Cursor}})
	require.NoError(t, err)
	require.Len(t, page.Items, 1)
	require.Equal(t, apiv1.AuditEnvironmentCreated, page.Items[0].EventType)
	require.False(t, page.Pagination.HasMore)
}
