// Package dashboard is modelplane's web UI, served by the API process: server-rendered pages
// (html/template) for the shell and the forms, and one small script (assets/app.js) that reads
// and changes everything through the API's own /v1 routes with the session cookie. Every
// template and asset is embedded in the binary.
package dashboard

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/keylimit"
	"github.com/modelplane/modelplane/session"
	"github.com/modelplane/modelplane/store"
)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed assets
var assetFS embed.FS

// Options configure the dashboard.
type Options struct {
	DB     *sqlx.DB
	Logger *slog.Logger
	// TemporalUIURL is the Temporal UI's base URL (http://127.0.0.1:8233); empty shows no
	// links to workflows.
	TemporalUIURL string
	// TemporalNamespace is the namespace the workflows run in (default "default").
	TemporalNamespace string
	// FailedSignInRate and FailedSignInBurst bound failed sign-ins per client address
	// (defaults 1 a second, in bursts of 10); a negative rate is no limit.
	FailedSignInRate  float64
	FailedSignInBurst int
}

// pages are the pages the dashboard renders, each its template file's name.
var pages = []string{"signin", "models", "model", "deployment", "nodes", "usage", "keys"}

type dashboard struct {
	o     Options
	pages map[string]*template.Template
	// failures limits failed sign-ins per client address: an address without a token is
	// refused before its key is checked, and a failure takes one.
	failures *keylimit.Limiter
}

// Register adds the dashboard's routes to e: the pages, sign-in and sign-out, /assets/ and
// the deployment async queue read.
func Register(e *echo.Echo, o Options) {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.TemporalNamespace == "" {
		o.TemporalNamespace = "default"
	}
	if o.FailedSignInRate == 0 {
		o.FailedSignInRate = 1
	}
	if o.FailedSignInBurst <= 0 {
		o.FailedSignInBurst = 10
	}
	d := &dashboard{o: o, pages: map[string]*template.Template{}, failures: keylimit.New(o.FailedSignInRate, o.FailedSignInBurst)}
	layout := template.Must(template.New("layout.html").Funcs(template.FuncMap{"list": func(v ...string) []string { return v }}).ParseFS(templateFS, "templates/layout.html"))
	for _, p := range pages {
		d.pages[p] = template.Must(template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+p+".html"))
	}
	assets, _ := fs.Sub(assetFS, "assets")
	e.GET("/assets/*", echo.WrapHandler(http.StripPrefix("/assets/", assetHandler(http.FileServer(http.FS(assets))))))
	e.GET("/signin", d.signInPage)
	e.POST("/signin", d.signIn)
	e.POST("/signout", d.signOut)
	e.GET("/", d.page("models", "Models"))
	e.GET("/m/:model_id", d.page("model", "Model"))
	e.GET("/m/:model_id/d/:deployment_id", d.page("deployment", "Deployment"))
	e.GET("/nodes", d.page("nodes", "Nodes"))
	e.GET("/usage", d.page("usage", "Usage"))
	e.GET("/keys", d.page("keys", "API keys"))
	e.GET("/d/:deployment_id", d.deploymentByID)
	e.GET("/dashboard/v1/models/:model_id/deployments/:deployment_id/async_queue", d.asyncQueue)
}

// assetHandler asks browsers to check the assets again each time: they change with the
// binary, and they are small.
func assetHandler(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-cache")
		h.ServeHTTP(w, r)
	})
}

// view is what every page's template sees.
type view struct {
	Title, Page            string
	CSRF                   string
	ModelID, DeploymentID  string
	TemporalUI, TemporalNS string
	Error, Next, Workspace string
	IsAdmin                bool
}

// page renders a page for a signed-in browser, and sends any other to the sign-in form.
func (d *dashboard) page(name, title string) echo.HandlerFunc {
	return func(c echo.Context) error {
		s, err := session.FromRequest(c.Request().Context(), d.o.DB, c.Request())
		if errors.Is(err, session.ErrNone) {
			return c.Redirect(http.StatusSeeOther, "/signin?next="+url.QueryEscape(c.Request().URL.RequestURI()))
		}
		if err != nil {
			return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot check session: database unavailable")
		}
		return d.render(c, http.StatusOK, name, view{Title: title, Page: name, CSRF: s.CSRFToken,
			ModelID: c.Param("model_id"), DeploymentID: c.Param("deployment_id"), Workspace: s.WorkspaceID,
			IsAdmin: s.IsAdmin, TemporalUI: strings.TrimRight(d.o.TemporalUIURL, "/"), TemporalNS: d.o.TemporalNamespace})
	}
}

func (d *dashboard) render(c echo.Context, status int, name string, v view) error {
	h := c.Response().Header()
	h.Set(echo.HeaderContentType, echo.MIMETextHTMLCharsetUTF8)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; form-action 'self'")
	h.Set("Referrer-Policy", "same-origin")
	c.Response().WriteHeader(status)
	return d.pages[name].ExecuteTemplate(c.Response(), "layout.html", v)
}

func (d *dashboard) signInPage(c echo.Context) error {
	return d.render(c, http.StatusOK, "signin", view{Title: "Sign in", Page: "signin", Next: localPath(c.QueryParam("next"))})
}

// signIn checks the API key the form sent and exchanges it for a session. The key itself is
// kept nowhere: not in the cookie, the page or the session's row.
func (d *dashboard) signIn(c echo.Context) error {
	r := c.Request()
	next := localPath(r.PostFormValue("next"))
	addr := clientAddress(r)
	if !d.failures.Allowed(addr, time.Now()) {
		c.Response().Header().Set("Retry-After", "1")
		return d.render(c, http.StatusTooManyRequests, "signin", view{Title: "Sign in", Page: "signin", Next: next,
			Error: "Too many failed sign-ins from this address; wait a few seconds and try again."})
	}
	fail := func(msg string) error {
		_, _ = d.failures.Take(addr, time.Now())
		return d.render(c, http.StatusUnauthorized, "signin", view{Title: "Sign in", Page: "signin", Next: next, Error: msg})
	}
	text := strings.TrimSpace(r.PostFormValue("api_key"))
	if text == "" {
		return fail("Enter an API key.")
	}
	id, secret, err := apikey.Parse(text)
	if err != nil {
		return fail("That is not an API key: keys look like mp_….")
	}
	ctx := r.Context()
	k, err := store.APIKeyByID(ctx, d.o.DB, id)
	if errors.Is(err, store.ErrNotFound) || (err == nil && !apikey.Matches(k.SecretSHA256, secret)) {
		return fail("Invalid API key.")
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot check API key: database unavailable")
	}
	if k.RevokedAt != nil {
		return fail("This API key was revoked.")
	}
	sid, _, err := session.Start(ctx, d.o.DB, k)
	if err != nil {
		return err
	}
	session.SetCookie(c.Response(), r, sid)
	d.o.Logger.Info("dashboard sign-in", "key_id", k.ID, "workspace_id", k.WorkspaceID)
	return c.Redirect(http.StatusSeeOther, next)
}

// signOut deletes the session; the form must carry its CSRF token.
func (d *dashboard) signOut(c echo.Context) error {
	r := c.Request()
	s, err := session.FromRequest(r.Context(), d.o.DB, r)
	if errors.Is(err, session.ErrNone) {
		session.ClearCookie(c.Response(), r)
		return c.Redirect(http.StatusSeeOther, "/signin")
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot check session: database unavailable")
	}
	if err := session.CheckCSRF(r, s); err != nil {
		return echo.NewHTTPError(http.StatusForbidden, err.Error())
	}
	if err := session.End(r.Context(), d.o.DB, s); err != nil {
		return err
	}
	session.ClearCookie(c.Response(), r)
	return c.Redirect(http.StatusSeeOther, "/signin")
}

// deploymentByID sends the browser to the deployment's page, found by its ID alone (the
// nodes page knows replicas' deployments, not their models).
func (d *dashboard) deploymentByID(c echo.Context) error {
	ctx := c.Request().Context()
	s, err := session.FromRequest(ctx, d.o.DB, c.Request())
	if errors.Is(err, session.ErrNone) {
		return c.Redirect(http.StatusSeeOther, "/signin?next="+url.QueryEscape(c.Request().URL.RequestURI()))
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot check session: database unavailable")
	}
	modelID, err := store.DeploymentModelID(ctx, d.o.DB, c.Param("deployment_id"))
	if err != nil {
		return err
	}
	if _, err := store.ModelByID(ctx, d.o.DB, s.WorkspaceID, modelID); err != nil {
		return err
	}
	return c.Redirect(http.StatusSeeOther, "/m/"+url.PathEscape(modelID)+"/d/"+url.PathEscape(c.Param("deployment_id")))
}

// asyncQueue answers the deployment's queued and running async requests, as the gateway's
// async_queue_status does, for the session's workspace only (404 otherwise).
func (d *dashboard) asyncQueue(c echo.Context) error {
	ctx := c.Request().Context()
	s, err := session.FromRequest(ctx, d.o.DB, c.Request())
	if errors.Is(err, session.ErrNone) {
		return echo.NewHTTPError(http.StatusUnauthorized, "sign in first")
	}
	if err != nil {
		return echo.NewHTTPError(http.StatusServiceUnavailable, "cannot check session: database unavailable")
	}
	modelID, deploymentID := c.Param("model_id"), c.Param("deployment_id")
	if _, err := store.ModelByID(ctx, d.o.DB, s.WorkspaceID, modelID); err != nil {
		return err
	}
	if _, err := store.DeploymentByID(ctx, d.o.DB, modelID, deploymentID); err != nil {
		return err
	}
	n, err := store.CountAsyncQueue(ctx, d.o.DB, deploymentID)
	if err != nil {
		return err
	}
	return c.JSON(http.StatusOK, map[string]any{"model_id": modelID, "deployment_id": deploymentID,
		"num_queued_requests": n.Queued, "num_in_progress_requests": n.InProgress})
}

// localPath returns p when it is a path on this server, else "/": a sign-in never sends the
// browser elsewhere.
func localPath(p string) string {
	if !strings.HasPrefix(p, "/") || strings.HasPrefix(p, "//") || strings.HasPrefix(p, "/\\") {
		return "/"
	}
	return p
}

// clientAddress is the connection's peer: X-Forwarded-For is not trusted, as on the gateway.
func clientAddress(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}
