package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/settings"
	"github.com/modelplane/modelplane/store"
)

var (
	environmentName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,62}$`)
	deploymentName  = regexp.MustCompile(`^[A-Za-z0-9._-]{1,255}$`)
)

// settingsError turns a settings.FieldError into a 400 naming the field.
func settingsError(err error) error {
	var fe *settings.FieldError
	if errors.As(err, &fe) {
		return Errorf(http.StatusBadRequest, "%s", fe.Error())
	}
	return err
}

// audit records what the request's key did, in the same transaction as the change.
func audit(ctx context.Context, tx sqlx.ExecerContext, c echo.Context, modelID, action, target string, details store.JSONMap) error {
	p := principal(c)
	return store.RecordAudit(ctx, tx, store.AuditEvent{
		WorkspaceID: p.WorkspaceID, ModelID: modelID, Actor: p.KeyID, Action: action, Target: target, Details: details,
	})
}

// createEnvironment adds a custom environment with its own settings (defaults where unset
// or null); the body is an apiv1.CreateEnvironmentRequest, the answer the environment (200,
// as the spec has it).
func (s *Server) createEnvironment(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	obj, err := readObject(c, "name", "autoscaling_settings", "promotion_settings", "request_backpressure_settings")
	if err != nil {
		return err
	}
	name, given, err := stringField(obj, "name")
	switch {
	case err != nil:
		return err
	case !given || name == "":
		return Errorf(http.StatusBadRequest, "name: required")
	case name == modelplane.ProductionEnvironment:
		return Errorf(http.StatusUnprocessableEntity, "name: production is created with the model and cannot be created again")
	case !environmentName.MatchString(name):
		return Errorf(http.StatusBadRequest, "name: use 1-63 lowercase letters, digits, - or _, starting with a letter or digit")
	}
	env := store.Environment{ModelID: m.ID, Name: name,
		AutoscalingSettings: settings.DefaultAutoscalingSettings(), PromotionSettings: settings.DefaultPromotionSettings()}
	if raw, ok := obj["autoscaling_settings"]; ok {
		if env.AutoscalingSettings, _, err = settings.PatchAutoscaling("autoscaling_settings", env.AutoscalingSettings, raw); err != nil {
			return settingsError(err)
		}
	}
	if raw, ok := obj["promotion_settings"]; ok {
		if env.PromotionSettings, _, err = settings.PatchPromotion("promotion_settings", env.PromotionSettings, raw); err != nil {
			return settingsError(err)
		}
	}
	if raw, ok := obj["request_backpressure_settings"]; ok {
		if env.RequestBackpressureSettings, _, err = settings.PatchBackpressure("request_backpressure_settings", env.RequestBackpressureSettings, raw); err != nil {
			return settingsError(err)
		}
	}
	ctx := c.Request().Context()
	var created store.Environment
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		var err error
		// The environment serves no deployment yet: only the replicas quota applies now; the
		// GPUs one is checked when a PATCH names the deployment it serves.
		if err := checkScaleQuota(ctx, tx, m.WorkspaceID, "", "autoscaling_settings", env.AutoscalingSettings, 0); err != nil {
			return err
		}
		if created, err = store.CreateEnvironment(ctx, tx, env); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "environment.create", name, store.JSONMap{
			"autoscaling_settings": env.AutoscalingSettings, "promotion_settings": env.PromotionSettings})
	})
	if errors.Is(err, store.ErrConflict) {
		return Errorf(http.StatusConflict, "environment %q already exists", name)
	}
	if err != nil {
		return err
	}
	v, err := s.environmentV1(c, created)
	if err != nil {
		return err
	}
	// The spec answers 200 with the environment.
	return c.JSON(http.StatusOK, v)
}

// patchEnvironment changes an environment's settings; fields not sent, or sent as null, keep
// their values. The body is an apiv1.UpdateEnvironmentRequest and the answer an
// apiv1.UpdateEnvironmentV1. Autoscaling and request backpressure settings are those of the
// deployment the environment serves, so they change that deployment's (what the autoscaler
// and the gateways use); while it serves none, the environment's own, which the first
// deployment promoted into it gets. Promotion settings and autoscaling schedules are the
// environment's.
func (s *Server) patchEnvironment(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	obj, err := readObject(c, "autoscaling_settings", "promotion_settings", "request_backpressure_settings",
		"autoscaling_schedule_settings", "shadow_settings")
	if err != nil {
		return err
	}
	name := c.Param("env")
	ctx := c.Request().Context()
	changed := false
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		e, err := store.EnvironmentForUpdate(ctx, tx, m.ID, name)
		if err != nil {
			return err
		}
		served, err := store.ServedDeploymentForUpdate(ctx, tx, e)
		if err != nil {
			return err
		}
		as, bp := e.AutoscalingSettings, e.RequestBackpressureSettings
		if served != nil {
			as, bp = served.AutoscalingSettings, served.RequestBackpressureSettings
		}
		ps, sched := e.PromotionSettings, e.AutoscalingSchedules
		if raw, ok := obj["autoscaling_settings"]; ok {
			if as, _, err = settings.PatchAutoscaling("autoscaling_settings", as, raw); err != nil {
				return settingsError(err)
			}
			if served != nil && served.IsDevelopment && as != settings.ForDevelopment(as) {
				return Errorf(http.StatusBadRequest, "autoscaling_settings.max_replica: environment %s serves the development deployment, which has at most one replica (min_replica at most 1)", name)
			}
			servedID, gpus := "", 0
			if served != nil {
				servedID, gpus = served.ID, served.GPUsPerReplica
			}
			if err := checkScaleQuota(ctx, tx, m.WorkspaceID, servedID, "autoscaling_settings", as, gpus); err != nil {
				return err
			}
		}
		if raw, ok := obj["promotion_settings"]; ok {
			if ps, _, err = settings.PatchPromotion("promotion_settings", ps, raw); err != nil {
				return settingsError(err)
			}
		}
		if raw, ok := obj["request_backpressure_settings"]; ok {
			if bp, _, err = settings.PatchBackpressure("request_backpressure_settings", bp, raw); err != nil {
				return settingsError(err)
			}
		}
		if raw, ok := obj["autoscaling_schedule_settings"]; ok {
			newID := func() string { return modelplane.NewID(8) }
			if sched, _, err = settings.PatchSchedules("autoscaling_schedule_settings", sched, raw, newID); err != nil {
				return settingsError(err)
			}
		}
		shadow := e.ShadowSettings
		if raw, ok := obj["shadow_settings"]; ok {
			if shadow, _, err = settings.PatchShadow("shadow_settings", shadow, raw); err != nil {
				return settingsError(err)
			}
			if err := checkShadowDeployment(ctx, tx, m, e, shadow); err != nil {
				return err
			}
		}
		details := store.JSONMap{"autoscaling_settings": as, "promotion_settings": ps, "request_backpressure_settings": bp,
			"autoscaling_schedules": sched, "shadow_settings": shadow}
		if served != nil {
			details["deployment_id"] = served.ID
			if as != served.AutoscalingSettings {
				if err := store.UpdateDeploymentAutoscaling(ctx, tx, m.ID, served.ID, as); err != nil {
					return err
				}
				changed = true
			}
			if !bp.Equal(served.RequestBackpressureSettings) {
				if err := store.UpdateDeploymentBackpressure(ctx, tx, m.ID, served.ID, bp); err != nil {
					return err
				}
				changed = true
			}
			// The environment keeps its own, for a time when it serves none.
			as, bp = e.AutoscalingSettings, e.RequestBackpressureSettings
		}
		if as != e.AutoscalingSettings || ps != e.PromotionSettings || !bp.Equal(e.RequestBackpressureSettings) {
			if err := store.UpdateEnvironmentSettings(ctx, tx, m.ID, name, as, ps, bp); err != nil {
				return err
			}
			changed = true
		}
		if !shadow.Equal(e.ShadowSettings) {
			if err := store.UpdateEnvironmentShadow(ctx, tx, m.ID, name, shadow); err != nil {
				return err
			}
			changed = true
		}
		if !sched.Equal(e.AutoscalingSchedules) {
			if err := store.UpdateEnvironmentSchedules(ctx, tx, m.ID, name, sched); err != nil {
				return err
			}
			changed = true
		}
		if !changed {
			return nil
		}
		return audit(ctx, tx, c, m.ID, "environment.update", name, details)
	})
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "environment %q of model %s not found", name, m.ID)
	}
	if err != nil {
		return err
	}
	e, err := s.environment(c, m.ID, name)
	if err != nil {
		return err
	}
	v, err := s.environmentV1(c, e)
	if err != nil {
		return err
	}
	out := apiv1.UpdateEnvironmentV1{Environment: v, Status: apiv1.SettingsUnchanged,
		Message: "the environment already has these settings"}
	if changed {
		out.Status = apiv1.SettingsAccepted
		out.Message = "saved: the autoscaler applies autoscaling settings and schedules on its next tick, " +
			"gateways the backpressure policy and shadow settings when they reload their routes, and the next " +
			"promotion the promotion settings; target_in_flight_tokens is kept but not yet acted on"
	}
	return c.JSON(http.StatusOK, out)
}

// checkShadowDeployment refuses shadow settings that name a deployment the environment
// cannot copy to: one that is not the model's (404 when no deployment of the workspace has
// that ID, 422 for another model's), one that was deleted, and the one the environment
// serves.
func checkShadowDeployment(ctx context.Context, db sqlx.QueryerContext, m store.Model, e store.Environment, s settings.ShadowSettings) error {
	if s.DeploymentID == nil {
		return nil
	}
	id := *s.DeploymentID
	owner, deleted, err := store.DeploymentOwner(ctx, db, m.WorkspaceID, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return Errorf(http.StatusNotFound, "shadow_settings.deployment_id: deployment %q not found", id)
	case err != nil:
		return err
	case owner != m.ID:
		return Errorf(http.StatusUnprocessableEntity, "shadow_settings.deployment_id: deployment %s is a deployment of model %s, not of %s: a shadow must be a deployment of the same model", id, owner, m.ID)
	case deleted:
		return Errorf(http.StatusUnprocessableEntity, "shadow_settings.deployment_id: deployment %s was deleted", id)
	case e.CurrentDeploymentID != nil && *e.CurrentDeploymentID == id:
		return Errorf(http.StatusUnprocessableEntity, "shadow_settings.deployment_id: deployment %s is the one environment %s serves; a shadow must be another deployment", id, e.Name)
	}
	return nil
}

// getShadow answers the environment's shadow figures since its shadow settings last changed
// (an apiv1.ShadowStatsV1); with no shadow, deployment_id null and zeros.
func (s *Server) getShadow(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	e, err := s.environment(c, m.ID, c.Param("env"))
	if err != nil {
		return err
	}
	var out apiv1.ShadowStatsV1
	if sh := e.ShadowSettings; sh.Shadowing() {
		f, err := store.SumShadowStats(c.Request().Context(), s.deps.DB, m.ID, e.Name, e.ShadowChangedAt)
		if err != nil {
			return err
		}
		out = apiv1.ShadowStatsV1{DeploymentID: sh.DeploymentID, Percent: sh.Percent, Copied: f.Copied,
			Equal: f.Equal, Different: f.Different, Errors: f.Errors, Dropped: f.Dropped,
			PrimaryP99Ms: milliseconds(f.PrimaryP99), ShadowP99Ms: milliseconds(f.ShadowP99)}
	}
	return c.JSON(http.StatusOK, out)
}

func milliseconds(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }

// renameDeployment changes a published deployment's name (an apiv1.RenameDeploymentRequest);
// a body without a name, or with a null one, or with the name it has, changes nothing and
// answers the deployment.
func (s *Server) renameDeployment(c echo.Context) error {
	m, err := s.ownModel(c)
	if err != nil {
		return err
	}
	obj, err := readObject(c, "name")
	if err != nil {
		return err
	}
	// The spec's name is nullable with default null: left out or null, nothing changes.
	raw, given := obj["name"]
	given = given && !settings.IsNull(raw)
	name, _, err := stringField(obj, "name")
	switch {
	case err != nil:
		return err
	case given && !deploymentName.MatchString(name):
		return Errorf(http.StatusBadRequest, "name: use 1-255 of letters, digits, '.', '_' or '-'")
	}
	ctx := c.Request().Context()
	d, err := s.deploymentRef(c, m.ID)
	if err != nil {
		return err
	}
	if !given || name == d.Name {
		return s.deploymentJSON(c, d)
	}
	if d.IsDevelopment {
		return Errorf(http.StatusUnprocessableEntity, "the development deployment is always named development")
	}
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		if err := store.RenameDeployment(ctx, tx, m.ID, d.ID, name); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "deployment.rename", d.ID, store.JSONMap{"from": d.Name, "to": name})
	})
	if errors.Is(err, store.ErrConflict) {
		return Errorf(http.StatusConflict, "model %s already has a deployment named %q", m.ID, name)
	}
	if err != nil {
		return err
	}
	v, err := store.DeploymentViewByRef(ctx, s.deps.DB, m.ID, d.ID)
	if err != nil {
		return err
	}
	return s.deploymentJSON(c, v)
}

// ownDeployment resolves the route's model, which the caller's workspace must own, and its
// deployment (ID or alias), each with a 404 naming it.
func (s *Server) ownDeployment(c echo.Context) (store.Model, store.DeploymentView, error) {
	m, err := s.ownModel(c)
	if err != nil {
		return m, store.DeploymentView{}, err
	}
	d, err := s.deploymentRef(c, m.ID)
	return m, d, err
}

// deploymentRef resolves the route's deployment (ID or alias) with a 404 naming it.
func (s *Server) deploymentRef(c echo.Context, modelID string) (store.DeploymentView, error) {
	ref := c.Param("deployment_id")
	v, err := store.DeploymentViewByRef(c.Request().Context(), s.deps.DB, modelID, ref)
	if errors.Is(err, store.ErrNotFound) {
		return v, Errorf(http.StatusNotFound, "deployment %q of model %s not found", ref, modelID)
	}
	return v, err
}

// patchAutoscaling changes a deployment's autoscaling settings (an
// apiv1.UpdateAutoscalingSettingsRequest); the autoscaler reads them on its next tick.
func (s *Server) patchAutoscaling(c echo.Context) error {
	m, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	body, err := readObject(c, "min_replica", "max_replica", "autoscaling_window", "scale_down_delay",
		"concurrency_target", "target_utilization_percentage", "max_scale_down_rate", "target_in_flight_tokens")
	if err != nil {
		return err
	}
	raw, err := marshalObject(body)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	changed := false
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		// Read under a row lock so two PATCHes of different fields both take effect.
		current, err := store.DeploymentForUpdate(ctx, tx, m.ID, d.ID)
		if err != nil {
			return err
		}
		next, ch, err := settings.PatchAutoscaling("", current.AutoscalingSettings, raw)
		if err != nil {
			return settingsError(err)
		}
		if d.IsDevelopment && next != settings.ForDevelopment(next) {
			return Errorf(http.StatusBadRequest, "max_replica: the development deployment has at most one replica (min_replica at most 1)")
		}
		if changed = ch; !changed {
			return nil
		}
		if err := checkScaleQuota(ctx, tx, m.WorkspaceID, d.ID, "", next, current.GPUsPerReplica); err != nil {
			return err
		}
		if err := store.UpdateDeploymentAutoscaling(ctx, tx, m.ID, d.ID, next); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "deployment.autoscaling_settings", d.ID, store.JSONMap{"autoscaling_settings": next})
	})
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "deployment %s of model %s not found", d.ID, m.ID)
	}
	if err != nil {
		return err
	}
	if !changed {
		return c.JSON(http.StatusOK, apiv1.UpdateAutoscalingSettingsV1{Status: apiv1.SettingsUnchanged, Message: "the settings already have these values"})
	}
	msg := "the autoscaler applies them on its next tick"
	env, err := store.PromotingInto(ctx, s.deps.DB, m.ID, d.ID)
	if err != nil {
		return err
	}
	if env != "" {
		msg += fmt.Sprintf("; deployment %s is being promoted to %s and takes %s's settings when the promotion switches", d.ID, env, env)
	}
	return c.JSON(http.StatusOK, apiv1.UpdateAutoscalingSettingsV1{Status: apiv1.SettingsAccepted, Message: msg})
}

// patchBackpressure changes a deployment's request backpressure settings (an
// apiv1.UpdateRequestBackpressureSettingsRequest) and answers them; gateways act on them as
// soon as they reload their routes.
func (s *Server) patchBackpressure(c echo.Context) error {
	m, d, err := s.ownDeployment(c)
	if err != nil {
		return err
	}
	body, err := readObject(c, "policy")
	if err != nil {
		return err
	}
	raw, err := marshalObject(body)
	if err != nil {
		return err
	}
	ctx := c.Request().Context()
	var next settings.RequestBackpressureSettings
	err = store.WithTx(ctx, s.deps.DB, func(tx *sqlx.Tx) error {
		current, err := store.DeploymentForUpdate(ctx, tx, m.ID, d.ID)
		if err != nil {
			return err
		}
		var changed bool
		if next, changed, err = settings.PatchBackpressure("", current.RequestBackpressureSettings, raw); err != nil {
			return settingsError(err)
		}
		if !changed {
			return nil
		}
		if err := store.UpdateDeploymentBackpressure(ctx, tx, m.ID, d.ID, next); err != nil {
			return err
		}
		return audit(ctx, tx, c, m.ID, "deployment.request_backpressure_settings", d.ID, store.JSONMap{
			"request_backpressure_settings": next, "previous_request_backpressure_settings": current.RequestBackpressureSettings})
	})
	if errors.Is(err, store.ErrNotFound) {
		return Errorf(http.StatusNotFound, "deployment %s of model %s not found", d.ID, m.ID)
	}
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, next)
}
