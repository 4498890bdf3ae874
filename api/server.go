// Package api is modelplane's management API: echo handlers, API-key authentication and the
// one place where domain errors become HTTP statuses.
package api

import (
	"context"
	"crypto/tls"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/labstack/echo/v4/middleware"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/blob"
	"github.com/modelplane/modelplane/dashboard"
	"github.com/modelplane/modelplane/internal/httpserve"
	"github.com/modelplane/modelplane/internal/promutil"
	"github.com/modelplane/modelplane/internal/telemetry"
	"github.com/modelplane/modelplane/secretbox"
)

// Deps are what the API needs from the rest of the system.
type Deps struct {
	DB       *sqlx.DB
	Temporal client.Client // nil only in tests that do not touch workflows; /readyz then fails
	Logger   *slog.Logger
	// Registry receives the API's metrics and is served on /metrics; nil means the
	// process-wide default registry.
	Registry *prometheus.Registry
	// NodeToken is the secret agents present to report to the API (and the API presents
	// to agents). Empty disables node registration.
	NodeToken string
	// AgentTLS is what the API trusts when it calls agents at https:// URLs; nil means the
	// system's certificate authorities.
	AgentTLS *tls.Config
	// Blobs stores uploaded model packages; required.
	Blobs blob.Store
	// ScratchDir is where uploads are unpacked to be checked (default: the system's).
	ScratchDir string
	// MaxArchiveBytes bounds an upload (default DefaultMaxArchiveBytes).
	MaxArchiveBytes int64
	// MaxUnpackedBytes bounds the files an uploaded package unpacks to, in every workspace
	// (default DefaultMaxUnpackedBytes); the expansion ratio is bounded as well, by
	// modelpkg's defaults.
	MaxUnpackedBytes int64
	// SecretsKey seals workspace secrets; nil turns the secrets routes off (503).
	SecretsKey *secretbox.Key
	// MetricsToken is the Bearer token /metrics asks for: its labels name every workspace's
	// models and deployments. Empty refuses every scrape.
	MetricsToken string
	// TemporalUIURL and TemporalNamespace let the dashboard link each operation to its
	// workflow in the Temporal UI; an empty URL shows no links.
	TemporalUIURL     string
	TemporalNamespace string
}

// Server is the management API over its dependencies.
type Server struct {
	deps Deps
	log  *slog.Logger
}

// New builds the API's echo instance: health routes without auth, /metrics behind the
// metrics token, /v1 behind RequireKey, and the central error handler.
func New(deps Deps) *echo.Echo {
	if deps.Logger == nil {
		deps.Logger = slog.Default()
	}
	if deps.MaxArchiveBytes <= 0 {
		deps.MaxArchiveBytes = DefaultMaxArchiveBytes
	}
	if deps.MaxUnpackedBytes <= 0 {
		deps.MaxUnpackedBytes = DefaultMaxUnpackedBytes
	}
	s := &Server{deps: deps, log: deps.Logger}

	e := echo.New()
	e.HideBanner, e.HidePort = true, true
	e.HTTPErrorHandler = errorHandler(s.log)
	// First, so that a recovered panic and every log line of the request are in its span.
	e.Use(telemetry.Echo(func(err error) int { ae, _ := toError(err); return ae.Status }))
	e.Use(middleware.Recover())
	e.Use(middleware.RequestID())

	var reg prometheus.Registerer = prometheus.DefaultRegisterer
	var gather prometheus.Gatherer = prometheus.DefaultGatherer
	if deps.Registry != nil {
		reg, gather = deps.Registry, deps.Registry
	}
	e.Use(requestMetrics(reg))
	promutil.Register(reg, &nodeCollector{db: deps.DB, log: s.log})

	e.GET("/healthz", s.healthz)
	e.GET("/readyz", s.readyz)
	e.GET("/metrics", echo.WrapHandler(httpserve.MetricsToken(deps.MetricsToken, promhttp.HandlerFor(gather, promhttp.HandlerOpts{}))))

	v1 := e.Group("/v1", RequireKey(deps.DB, s.log), refuseNULInURL)
	v1.GET("/models", s.listModels)
	v1.GET("/models/:model_id", s.getModel)
	v1.GET("/models/:model_id/deployments", s.listDeployments)
	v1.GET("/models/:model_id/deployments/:deployment_id", s.getDeployment)
	v1.GET("/models/:model_id/environments", s.listEnvironments)
	v1.GET("/models/:model_id/environments/:env", s.getEnvironment)
	v1.GET("/models/:model_id/environments/:env/shadow", s.getShadow)
	v1.POST("/models/:model_id/environments", s.createEnvironment)
	v1.PATCH("/models/:model_id/environments/:env", s.patchEnvironment)
	v1.PATCH("/models/:model_id/deployments/:deployment_id", s.renameDeployment)
	v1.PATCH("/models/:model_id/deployments/:deployment_id/autoscaling_settings", s.patchAutoscaling)
	v1.GET("/models/:model_id/audit_logs", s.listModelAudit)
	v1.POST("/models", s.createModel)
	v1.DELETE("/models/:model_id", s.deleteModel)
	v1.POST("/models/:model_id/deployments", s.createDeployment)
	v1.POST("/models/:model_id/deployments/:deployment_id/activate", s.activateDeployment)
	v1.POST("/models/:model_id/deployments/:deployment_id/deactivate", s.deactivateDeployment)
	v1.DELETE("/models/:model_id/deployments/:deployment_id", s.deleteDeployment)
	v1.PATCH("/models/:model_id/deployments/:deployment_id/request_backpressure_settings", s.patchBackpressure)
	v1.POST("/models/:model_id/deployments/:deployment_id/retry", s.retryDeployment)
	v1.DELETE("/models/:model_id/deployments/:deployment_id/replicas/:replica_id", s.terminateReplica)
	v1.GET("/models/:model_id/deployments/:deployment_id/config", s.deploymentConfig)
	v1.GET("/models/:model_id/deployments/:deployment_id/build_logs", s.buildLogs)
	v1.GET("/models/:model_id/deployments/:deployment_id/logs", s.deploymentLogs)
	v1.POST("/models/:model_id/deployments/:deployment_id/logs", s.deploymentLogs)
	v1.GET("/models/:model_id/environments/:env/logs", s.environmentLogs)
	v1.GET("/models/:model_id/deployments/:deployment_id/download", s.downloadDeployment)
	v1.GET("/models/:model_id/deployments/:deployment_id/patches", s.getPatches)
	v1.GET("/models/:model_id/deployments/:deployment_id/patches/state", s.getPatchesState)
	v1.POST("/models/:model_id/deployments/:deployment_id/patches", s.createPatch)
	v1.POST("/models/:model_id/deployments/:deployment_id/patches/sync", s.syncPatches)
	v1.POST("/models/:model_id/deployments/:deployment_id/keep_awake", s.keepAwake)
	v1.POST("/models/:model_id/deployments/:deployment_id/promote", s.promoteDeployment)
	v1.POST("/models/:model_id/environments/:env/promote", s.promoteToEnvironment)
	v1.POST("/models/:model_id/environments/:env/cancel_promotion", s.cancelPromotion)
	v1.POST("/models/:model_id/environments/:env/pause_promotion", s.pausePromotion)
	v1.POST("/models/:model_id/environments/:env/resume_promotion", s.resumePromotion)
	v1.POST("/models/:model_id/environments/:env/force_cancel_promotion", s.forceCancelPromotion)
	v1.POST("/models/:model_id/environments/:env/force_roll_forward_promotion", s.forceRollForwardPromotion)
	v1.DELETE("/models/:model_id/environments/:env", s.deleteEnvironment)
	v1.POST("/models/:model_id/environments/:env/activate", s.activateEnvironment)
	v1.POST("/models/:model_id/environments/:env/deactivate", s.deactivateEnvironment)
	v1.GET("/models/:model_id/deployments/:deployment_id/metrics", s.deploymentMetrics)
	v1.GET("/models/:model_id/environments/:env/metrics", s.environmentMetrics)
	v1.GET("/nodes", s.listNodes)
	v1.GET("/instance_types", s.listInstanceTypes)
	v1.GET("/api_keys", s.listAPIKeys)
	v1.POST("/api_keys", s.createAPIKey)
	v1.DELETE("/api_keys/:api_key_prefix", s.deleteAPIKey)
	v1.GET("/audit_logs", s.listWorkspaceAudit)
	v1.GET("/quotas", s.getQuotas)
	v1.GET("/usage", s.getUsage)
	v1.GET("/webhook_secret", s.getWebhookSecret)
	v1.POST("/webhook_secret", s.rotateWebhookSecret)
	v1.GET("/secrets", s.listSecrets, s.requireSecretsKey)
	v1.POST("/secrets", s.upsertSecret, s.requireSecretsKey)
	v1.DELETE("/secrets/:secret_name", s.deleteSecret, s.requireSecretsKey)
	v1.POST("/archives", s.createArchive)
	v1.POST("/prepare_model_upload", s.prepareModelUpload)
	v1.PUT(UploadPath[len("/v1"):]+":key", s.putUpload)
	e.GET("/internal/v1/archives/:id", s.downloadArchive, s.requireNodeToken)
	// A presigned download: the token in the path is the credential, not an API key.
	e.GET(DownloadPath+":token", s.serveDownload)

	// The dashboard, at /: pages that call the routes above with a session cookie.
	dashboard.Register(e, dashboard.Options{DB: deps.DB, Logger: s.log,
		TemporalUIURL: deps.TemporalUIURL, TemporalNamespace: deps.TemporalNamespace})

	// Agents report here with the node token, not an API key.
	e.POST(agentproto.HeartbeatPath, s.nodeHeartbeat, s.requireNodeToken, middleware.BodyLimit("4M"))
	return e
}

// healthz says the process is up; it checks nothing else so that a slow dependency does not
// get the process restarted.
func (s *Server) healthz(c echo.Context) error {
	return c.JSON(http.StatusOK, apiv1.HealthV1{Status: "ok"})
}

// readyz says whether the process can serve: PostgreSQL and Temporal both answer.
func (s *Server) readyz(c echo.Context) error {
	ctx, cancel := context.WithTimeout(c.Request().Context(), 2*time.Second)
	defer cancel()
	checks := map[string]string{"postgres": "ok", "temporal": "ok"}
	ready := true
	if err := s.deps.DB.PingContext(ctx); err != nil {
		checks["postgres"], ready = err.Error(), false
	}
	if s.deps.Temporal == nil {
		checks["temporal"], ready = "not connected", false
	} else if _, err := s.deps.Temporal.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
		checks["temporal"], ready = err.Error(), false
	}
	status, code := "ready", http.StatusOK
	if !ready {
		status, code = "not ready", http.StatusServiceUnavailable
	}
	return c.JSON(code, apiv1.HealthV1{Status: status, Checks: checks})
}

// requestMetrics counts API requests by route and status, so dashboards see errors per route.
func requestMetrics(reg prometheus.Registerer) echo.MiddlewareFunc {
	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modelplane_api_requests_total",
		Help: "Management API requests by method, route and status code.",
	}, []string{"method", "route", "status_code"})
	duration := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "modelplane_api_request_duration_seconds",
		Help:    "Management API request duration by method and route.",
		Buckets: prometheus.DefBuckets,
	}, []string{"method", "route"})
	requests = promutil.Register(reg, requests)
	duration = promutil.Register(reg, duration)
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			start := time.Now()
			err := next(c)
			status := c.Response().Status
			if err != nil {
				e, _ := toError(err)
				status = e.Status
			}
			route := c.Path()
			if route == "" {
				route = "unmatched"
			}
			requests.WithLabelValues(c.Request().Method, route, strconv.Itoa(status)).Inc()
			duration.WithLabelValues(c.Request().Method, route).Observe(time.Since(start).Seconds())
			return err
		}
	}
}
