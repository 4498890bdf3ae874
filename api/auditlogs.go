package api

import (
	"encoding/json"
	"errors"
	"net/http"
	"slices"
	"strconv"

	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

// auditEventTypes is Baseten's event type for each audit action modelplane records. Actions
// it has none for (deployment.rename, deployment.download) and what workflows record of their own progress
// (promotion.stage and the like, actor "promotion:<id>") are left out of the spec-shaped
// audit logs.
var auditEventTypes = map[string]apiv1.AuditLogEventType{
	"model.create":                             apiv1.AuditModelDeployed,
	"deployment.create":                        apiv1.AuditModelDeployed,
	"deployment.activate":                      apiv1.AuditDeploymentActivated,
	"environment.activate":                     apiv1.AuditDeploymentActivated,
	"deployment.deactivate":                    apiv1.AuditDeploymentDeactivated,
	"environment.deactivate":                   apiv1.AuditDeploymentDeactivated,
	"promotion.start":                          apiv1.AuditDeploymentPromoted,
	"deployment.autoscaling_settings":          apiv1.AuditDeploymentAutoscalingSettings,
	"deployment.request_backpressure_settings": apiv1.AuditDeploymentBackpressure,
	"deployment.retry":                         apiv1.AuditDeploymentRetried,
	"replica.terminate":                        apiv1.AuditReplicaTerminated,
	"deployment.delete":                        apiv1.AuditDeploymentDeleted,
	"model.delete":                             apiv1.AuditModelDeleted,
	"environment.create":                       apiv1.AuditEnvironmentCreated,
	"environment.update":                       apiv1.AuditEnvironmentUpdated,
	"environment.delete":                       apiv1.AuditEnvironmentDeleted,
	"promotion.cancel":                         apiv1.AuditPromotionControl,
	"promotion.pause":                          apiv1.AuditPromotionControl,
	"promotion.resume":                         apiv1.AuditPromotionControl,
	"promotion.force_cancel":                   apiv1.AuditPromotionControl,
	"promotion.force_roll_forward":             apiv1.AuditPromotionControl,
	"api_key.create":                           apiv1.AuditAPIKeyCreated,
	"api_key.delete":                           apiv1.AuditAPIKeyDeleted,
	"secret.update":                            apiv1.AuditSecretUpdated,
	"secret.delete":                            apiv1.AuditSecretDeleted,
}

// auditControls is the control each promotion action sent.
var auditControls = map[string]apiv1.AuditPromotionControlAction{
	"promotion.cancel":             apiv1.AuditControlGracefulCancel,
	"promotion.pause":              apiv1.AuditControlPause,
	"promotion.resume":             apiv1.AuditControlResume,
	"promotion.force_cancel":       apiv1.AuditControlForceCancel,
	"promotion.force_roll_forward": apiv1.AuditControlForceRollForward,
}

// auditGroups is the event_type_groups group of each event type.
var auditGroups = map[apiv1.AuditLogEventType]apiv1.AuditLogEventTypeGroup{
	apiv1.AuditModelDeployed: apiv1.AuditGroupDeployed,
	// A retry builds and deploys the failed deployment again.
	apiv1.AuditDeploymentRetried:             apiv1.AuditGroupDeployed,
	apiv1.AuditDeploymentPromoted:            apiv1.AuditGroupPromoted,
	apiv1.AuditPromotionControl:              apiv1.AuditGroupPromoted,
	apiv1.AuditDeploymentActivated:           apiv1.AuditGroupActivatedDeactivated,
	apiv1.AuditDeploymentDeactivated:         apiv1.AuditGroupActivatedDeactivated,
	apiv1.AuditDeploymentAutoscalingSettings: apiv1.AuditGroupAutoscalingSettings,
	apiv1.AuditDeploymentBackpressure:        apiv1.AuditGroupBackpressureSettings,
	apiv1.AuditReplicaTerminated:             apiv1.AuditGroupReplicaTerminated,
	apiv1.AuditEnvironmentCreated:            apiv1.AuditGroupEnvironmentSettings,
	apiv1.AuditEnvironmentUpdated:            apiv1.AuditGroupEnvironmentSettings,
	apiv1.AuditEnvironmentDeleted:            apiv1.AuditGroupEnvironmentSettings,
	apiv1.AuditDeploymentDeleted:             apiv1.AuditGroupDeleted,
	apiv1.AuditModelDeleted:                  apiv1.AuditGroupDeleted,
	apiv1.AuditAPIKeyCreated:                 apiv1.AuditGroupAPIKeys,
	apiv1.AuditAPIKeyDeleted:                 apiv1.AuditGroupAPIKeys,
	apiv1.AuditSecretUpdated:                 apiv1.AuditGroupSecrets,
	apiv1.AuditSecretDeleted:                 apiv1.AuditGroupSecrets,
}

const (
	auditDefaultLimit = 20
	auditMaxLimit     = 200
)

// listWorkspaceAudit answers GET /v1/audit_logs: the workspace's audit log, any key of it.
func (s *Server) listWorkspaceAudit(c echo.Context) error {
	return s.auditLogs(c, store.AuditFilter{WorkspaceID: principal(c).WorkspaceID})
}

// listModelAudit answers GET /v1/models/{model_id}/audit_logs: the workspace's audit log
// narrowed to one of its models.
func (s *Server) listModelAudit(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	return s.auditLogs(c, store.AuditFilter{WorkspaceID: m.WorkspaceID, ModelID: m.ID})
}

// auditLogs answers one page of the audit log in Baseten's shape ({items, pagination}),
// narrowing base by the request's parameters: cursor, limit, direction, search,
// event_type_groups, user_ids (modelplane's actors are API keys: their IDs),
// deployment_ids, chain_deployment_ids, environment_names, sources, start_epoch_millis and
// end_epoch_millis.
func (s *Server) auditLogs(c echo.Context, base store.AuditFilter) error {
	f, cursor, limit, err := auditQuery(c, base)
	if err != nil {
		return err
	}
	page, err := store.AuditEvents(c.Request().Context(), s.deps.DB, f, cursor, limit)
	if err != nil {
		return err
	}
	out := apiv1.AuditLogsV1{Items: make([]apiv1.AuditLogEntryV1, 0, len(page.Records))}
	for _, r := range page.Records {
		entry, err := auditEntry(r)
		if err != nil {
			return err
		}
		out.Items = append(out.Items, entry)
	}
	if page.Next != nil {
		next := page.Next.String()
		out.Pagination = apiv1.PaginationV1{HasMore: true, Cursor: &next}
	}
	return c.JSON(http.StatusOK, out)
}

// auditQuery reads the audit log's paging and filter parameters into base.
func auditQuery(c echo.Context, base store.AuditFilter) (store.AuditFilter, *store.AuditCursor, int, error) {
	f := base
	f.KeyActorsOnly = true
	var cursor *store.AuditCursor
	if v := c.QueryParam("cursor"); v != "" && v != "null" {
		cur, err := store.ParseAuditCursor(v)
		if err != nil {
			return f, nil, 0, Errorf(http.StatusBadRequest, "cursor: not a cursor that a previous page answered")
		}
		cursor = &cur
	}
	limit := auditDefaultLimit
	if v := c.QueryParam("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > auditMaxLimit {
			return f, nil, 0, Errorf(http.StatusBadRequest, "limit: must be an integer from 1 to %d, not %q", auditMaxLimit, v)
		}
		limit = n
	}
	dir, err := queryEnum(c, "direction", apiv1.AuditNewestFirst,
		[]apiv1.AuditLogSortDirection{apiv1.AuditNewestFirst, apiv1.AuditOldestFirst})
	if err != nil {
		return f, nil, 0, err
	}
	f.Ascending = dir == apiv1.AuditOldestFirst
	f.Search = c.QueryParam("search")

	groups, err := queryEnumList(c, "event_type_groups", apiv1.AuditLogEventTypeGroups())
	if err != nil {
		return f, nil, 0, err
	}
	sources, err := queryEnumList(c, "sources", apiv1.AuditLogSources())
	if err != nil {
		return f, nil, 0, err
	}
	chains := len(queryList(c, "chain_deployment_ids")) > 0
	f.Actions = []string{}
	for action, typ := range auditEventTypes {
		if len(groups) > 0 && !slices.Contains(groups, auditGroups[typ]) {
			continue
		}
		// Every entry modelplane lists was taken through its API; there are no chains.
		if len(sources) > 0 && !slices.Contains(sources, apiv1.AuditSourceAPI) {
			continue
		}
		if chains {
			continue
		}
		f.Actions = append(f.Actions, action)
	}
	slices.Sort(f.Actions)
	f.Actors = queryList(c, "user_ids")
	f.DeploymentIDs = queryList(c, "deployment_ids")
	if f.Environments = queryList(c, "environment_names"); len(f.Environments) > 0 {
		for action := range auditEventTypes {
			if auditTargetsEnvironment(action) {
				f.EnvironmentActions = append(f.EnvironmentActions, action)
			}
		}
		slices.Sort(f.EnvironmentActions)
	}
	if f.From, err = queryEpochMillis(c, "start_epoch_millis"); err != nil {
		return f, nil, 0, err
	}
	if f.To, err = queryEpochMillis(c, "end_epoch_millis"); err != nil {
		return f, nil, 0, err
	}
	if f.From != nil && f.To != nil && f.From.After(*f.To) {
		return f, nil, 0, Errorf(http.StatusBadRequest, "start_epoch_millis: must not be after end_epoch_millis")
	}
	return f, cursor, limit, nil
}

// auditTargetsEnvironment reports whether an action's target is an environment's name.
func auditTargetsEnvironment(action string) bool {
	switch auditEventTypes[action] {
	case apiv1.AuditEnvironmentCreated, apiv1.AuditEnvironmentUpdated, apiv1.AuditEnvironmentDeleted,
		apiv1.AuditDeploymentPromoted, apiv1.AuditPromotionControl:
		return true
	}
	return action == "environment.activate" || action == "environment.deactivate"
}

// auditEntry is one recorded event in Baseten's shape.
func auditEntry(r store.AuditRecord) (apiv1.AuditLogEntryV1, error) {
	typ, ok := auditEventTypes[r.Action]
	if !ok {
		return apiv1.AuditLogEntryV1{}, errors.New("audit action " + r.Action + " has no event type")
	}
	model := apiv1.AuditModelV1{ModelID: r.ModelID, ModelName: r.ModelName}
	deploymentID := r.DeploymentID
	if deploymentID == "" && !auditTargetsEnvironment(r.Action) && r.ModelID != "" {
		deploymentID = r.Target
	}
	dep := apiv1.AuditDeploymentV1{AuditModelV1: model, DeploymentID: deploymentID, DeploymentName: r.DeploymentName}
	var data any
	switch typ {
	case apiv1.AuditModelDeployed:
		development, _ := r.Details["development"].(bool)
		data = apiv1.AuditEventModelDeployedV1{EventType: typ, AuditDeploymentV1: dep, Publish: !development}
	case apiv1.AuditDeploymentActivated, apiv1.AuditDeploymentDeactivated, apiv1.AuditDeploymentDeleted:
		data = apiv1.AuditEventDeploymentV1{EventType: typ, AuditDeploymentV1: dep}
	case apiv1.AuditDeploymentRetried:
		data = apiv1.AuditEventDeploymentRetriedV1{EventType: typ, AuditDeploymentV1: dep, Retried: true}
	case apiv1.AuditDeploymentBackpressure:
		data = apiv1.AuditEventBackpressureChangedV1{EventType: typ, AuditDeploymentV1: dep,
			Policy:         auditPolicy(r.Details, "request_backpressure_settings"),
			PreviousPolicy: auditPolicy(r.Details, "previous_request_backpressure_settings")}
	case apiv1.AuditReplicaTerminated:
		data = apiv1.AuditEventReplicaTerminatedV1{EventType: typ, AuditDeploymentV1: dep, ReplicaID: r.Target}
	case apiv1.AuditModelDeleted:
		data = apiv1.AuditEventModelDeletedV1{EventType: typ, AuditModelV1: model}
	case apiv1.AuditDeploymentPromoted:
		env := r.Target
		data = apiv1.AuditEventPromotedV1{EventType: typ, AuditDeploymentV1: dep, EnvironmentName: &env}
	case apiv1.AuditPromotionControl:
		data = apiv1.AuditEventPromotionControlV1{EventType: typ, AuditDeploymentV1: dep,
			EnvironmentName: r.Target, Action: auditControls[r.Action]}
	case apiv1.AuditDeploymentAutoscalingSettings:
		as := auditSetting(r.Details, "autoscaling_settings", settings.DefaultAutoscalingSettings())
		data = apiv1.AuditEventAutoscalingChangedV1{EventType: typ, AuditAutoscalingSettingsV1: auditAutoscaling(as),
			AuditDeploymentV1: dep}
	case apiv1.AuditEnvironmentCreated, apiv1.AuditEnvironmentUpdated:
		created := apiv1.AuditEventEnvironmentCreatedV1{EventType: typ, AuditModelV1: model, EnvironmentName: r.Target,
			AuditEnvironmentSettingsV1: auditEnvironment(
				auditSetting(r.Details, "autoscaling_settings", settings.DefaultAutoscalingSettings()),
				auditSetting(r.Details, "promotion_settings", settings.DefaultPromotionSettings()))}
		data = created
		if typ == apiv1.AuditEnvironmentUpdated {
			data = apiv1.AuditEventEnvironmentUpdatedV1{AuditEventEnvironmentCreatedV1: created}
		}
	case apiv1.AuditEnvironmentDeleted:
		data = apiv1.AuditEventEnvironmentDeletedV1{EventType: typ, AuditModelV1: model, EnvironmentName: r.Target}
	case apiv1.AuditAPIKeyCreated, apiv1.AuditAPIKeyDeleted:
		keyType := apiv1.AuditAPIKeyPersonal
		if admin, _ := r.Details["admin"].(bool); admin {
			keyType = apiv1.AuditAPIKeyServiceAccount
		}
		data = apiv1.AuditEventAPIKeyV1{EventType: typ, APIKeyID: r.Target, APIKeyType: keyType, Prefix: r.Target}
	case apiv1.AuditSecretUpdated, apiv1.AuditSecretDeleted:
		name, _ := r.Details["name"].(string)
		data = apiv1.AuditEventSecretV1{EventType: typ, SecretID: r.Target, SecretName: name}
	}
	raw, err := json.Marshal(data)
	if err != nil {
		return apiv1.AuditLogEntryV1{}, err
	}
	source := apiv1.AuditSourceAPI
	actor := apiv1.AuditLogActorV1{Type: apiv1.AuditActorAPIKey, APIKeyPrefix: &r.Actor}
	if r.KeyName != "" {
		actor.APIKeyName = &r.KeyName
	}
	return apiv1.AuditLogEntryV1{ID: strconv.FormatInt(r.ID, 10), Created: r.CreatedAt.UTC(), EventType: typ,
		EventData: raw, Source: &source, Actor: actor}, nil
}

// auditSetting reads settings an event recorded under key, over def; def when it recorded
// none (environments created before their settings were recorded).
func auditSetting[T any](details store.JSONMap, key string, def T) T {
	v, ok := details[key]
	if !ok {
		return def
	}
	raw, err := json.Marshal(v)
	if err != nil {
		return def
	}
	out := def
	if err := json.Unmarshal(raw, &out); err != nil {
		return def
	}
	return out
}

// auditPolicy is the backpressure policy of the settings an event recorded under key; nil
// when they set none, or the event recorded none.
func auditPolicy(details store.JSONMap, key string) *string {
	if _, ok := details[key]; !ok {
		return nil
	}
	p := auditSetting(details, key, settings.RequestBackpressureSettings{}).PolicyOrNone()
	if p == "" {
		return nil
	}
	out := string(p)
	return &out
}

func auditAutoscaling(as settings.AutoscalingSettings) apiv1.AuditAutoscalingSettingsV1 {
	rate := float64(as.MaxScaleDownRate)
	return apiv1.AuditAutoscalingSettingsV1{MinReplica: as.MinReplica, MaxReplica: as.MaxReplica,
		ConcurrencyTarget: as.ConcurrencyTarget, AutoscalingWindow: &as.AutoscalingWindow,
		ScaleDownDelay: &as.ScaleDownDelay, TargetUtilizationPercentage: &as.TargetUtilizationPercentage,
		MaxScaleDownRate: &rate}
}

func auditEnvironment(as settings.AutoscalingSettings, ps settings.PromotionSettings) apiv1.AuditEnvironmentSettingsV1 {
	cleanup := string(ps.PromotionCleanupStrategy)
	return apiv1.AuditEnvironmentSettingsV1{AuditAutoscalingSettingsV1: auditAutoscaling(as),
		RedeployOnPromotion: &ps.RedeployOnPromotion, PromotionCleanupStrategy: &cleanup,
		RampUpWhilePromoting: &ps.RampUpWhilePromoting, RampUpDurationSeconds: &ps.RampUpDurationSeconds}
}
