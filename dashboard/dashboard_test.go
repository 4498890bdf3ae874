package dashboard_test

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/dashboard"
	"github.com/modelplane/modelplane/internal/apitest"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/session"
	"github.com/modelplane/modelplane/store"
)

var dbURL string

func TestMain(m *testing.M) { os.Exit(pgtest.Run(m, "dashboard", true, &dbURL)) }

type fixture struct {
	db *sqlx.DB
	e  *echo.Echo
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	return &fixture{db: db, e: api.New(apitest.Deps(t, db))}
}

func (f *fixture) serve(req *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	f.e.ServeHTTP(rec, req)
	return rec
}

// signIn posts the key to the sign-in form and returns the session cookie.
func (f *fixture) signIn(t *testing.T, key string) *http.Cookie {
	t.Helper()
	rec := f.serve(form("/signin", url.Values{"api_key": {key}, "next": {"/nodes"}}))
	require.Equal(t, http.StatusSeeOther, rec.Code, "sign-in answered %d: %s", rec.Code, rec.Body.String())
	require.Equal(t, "/nodes", rec.Header().Get("Location"))
	for _, c := range rec.Result().Cookies() {
		if c.Name == session.CookieName {
			return c
		}
	}
	t.Fatalf("sign-in set no %s cookie: %v", session.CookieName, rec.Header()["Set-Cookie"])
	return nil
}

func form(path string, v url.Values) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, strings.NewReader(v.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return req
}

func withCookie(req *http.Request, c *http.Cookie) *http.Request {
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	return req
}

func errorMessage(t *testing.T, rec *httptest.ResponseRecorder) string {
	t.Helper()
	var body struct {
		Error struct{ Message string } `json:"error"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body), "body: %s", rec.Body.String())
	return body.Error.Message
}

func (f *fixture) csrf(t *testing.T, c *http.Cookie) string {
	t.Helper()
	sum := sha256.Sum256([]byte(c.Value))
	s, err := store.DashboardSessionByHash(context.Background(), f.db, sum[:])
	require.NoError(t, err)
	return s.CSRFToken
}

func TestSignIn_SetsAStrictHttpOnlyCookieAndKeepsOnlyItsHash(t *testing.T) {
	f := newFixture(t)
	_, k, key := apitest.Workspace(t, f.db, "dash")
	c := f.signIn(t, key)
	assert.True(t, c.HttpOnly, "HttpOnly")
	assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
	assert.Equal(t, "/", c.Path)
	assert.False(t, c.Secure, "Secure over plain HTTP")
	assert.NotContains(t, c.Value, key)

	var rows []store.DashboardSession
	require.NoError(t, f.db.Select(&rows, `SELECT * FROM dashboard_sessions WHERE api_key_id = $1`, k.ID))
	require.Len(t, rows, 1)
	sum := sha256.Sum256([]byte(c.Value))
	assert.Equal(t, sum[:], rows[0].IDSHA256, "the row holds the session ID's SHA-256")
	assert.Equal(t, k.WorkspaceID, rows[0].WorkspaceID)
	assert.True(t, rows[0].ExpiresAt.After(rows[0].CreatedAt))

	req := form("/signin", url.Values{"api_key": {key}})
	req.TLS = &tls.ConnectionState{}
	rec := f.serve(req)
	require.Equal(t, http.StatusSeeOther, rec.Code)
	assert.True(t, rec.Result().Cookies()[0].Secure, "Secure when the request came over TLS")

	page := f.serve(withCookie(httptest.NewRequest(http.MethodGet, "/", nil), c))
	require.Equal(t, http.StatusOK, page.Code)
	assert.Contains(t, page.Body.String(), `name="csrf-token" content="`+rows[0].CSRFToken+`"`)
	assert.NotContains(t, page.Body.String(), key, "the page must not hold the key")
}

func TestSignIn_AWrongKeyIsRefusedAndRepeatedFailuresAreLimited(t *testing.T) {
	db, err := store.Open(context.Background(), dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	e := echo.New()
	dashboard.Register(e, dashboard.Options{DB: db, FailedSignInRate: 0.001, FailedSignInBurst: 2})
	try := func(key string) *httptest.ResponseRecorder {
		rec := httptest.NewRecorder()
		e.ServeHTTP(rec, form("/signin", url.Values{"api_key": {key}}))
		return rec
	}
	rec := try("mp_notakeyatall_0000000000000000")
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Empty(t, rec.Result().Cookies())
	assert.Equal(t, http.StatusUnauthorized, try("nonsense").Code)
	rec = try("nonsense")
	assert.Equal(t, http.StatusTooManyRequests, rec.Code, "the third failure in a row from one address")
	assert.Contains(t, rec.Body.String(), "Too many failed sign-ins")
}

func TestSession_ReadsTheAPIAndSeesNothingOfAnotherWorkspace(t *testing.T) {
	f := newFixture(t)
	m, _, key := apitest.Workspace(t, f.db, "dash")
	other, _, _ := apitest.Workspace(t, f.db, "other")
	c := f.signIn(t, key)

	rec := f.serve(withCookie(httptest.NewRequest(http.MethodGet, "/v1/models", nil), c))
	require.Equal(t, http.StatusOK, rec.Code, rec.Body.String())
	assert.Contains(t, rec.Body.String(), m.ID)
	assert.NotContains(t, rec.Body.String(), other.ID)

	rec = f.serve(withCookie(httptest.NewRequest(http.MethodGet, "/v1/models/"+other.ID, nil), c))
	assert.Equal(t, http.StatusNotFound, rec.Code)
	rec = f.serve(withCookie(httptest.NewRequest(http.MethodGet, "/dashboard/v1/models/"+other.ID+"/deployments/x/async_queue", nil), c))
	assert.Equal(t, http.StatusNotFound, rec.Code)
}

func TestSession_AChangeWithoutTheCSRFTokenIs403(t *testing.T) {
	f := newFixture(t)
	m, _, key := apitest.Workspace(t, f.db, "dash")
	c := f.signIn(t, key)
	path := "/v1/models/" + m.ID + "/environments/production"
	patch := func(token string) *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodPatch, path, strings.NewReader(`{}`))
		req.Header.Set("Content-Type", "application/json")
		if token != "" {
			req.Header.Set(session.CSRFHeader, token)
		}
		return f.serve(withCookie(req, c))
	}
	rec := patch("")
	require.Equal(t, http.StatusForbidden, rec.Code, rec.Body.String())
	assert.Contains(t, errorMessage(t, rec), "missing CSRF token")
	assert.Contains(t, errorMessage(t, rec), session.CSRFHeader)
	rec = patch("not-the-token")
	require.Equal(t, http.StatusForbidden, rec.Code)
	assert.Contains(t, errorMessage(t, rec), "invalid CSRF token")
	rec = patch(f.csrf(t, c))
	assert.NotContains(t, []int{http.StatusUnauthorized, http.StatusForbidden}, rec.Code, rec.Body.String())

	// An API key in the Authorization header needs no token: CSRF is a browser's problem.
	req := httptest.NewRequest(http.MethodPatch, path, strings.NewReader(`{}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Api-Key "+key)
	rec = f.serve(req)
	assert.NotEqual(t, http.StatusForbidden, rec.Code, rec.Body.String())
}

func TestSignOut_NeedsTheCSRFTokenAndEndsTheSession(t *testing.T) {
	f := newFixture(t)
	_, _, key := apitest.Workspace(t, f.db, "dash")
	c := f.signIn(t, key)
	token := f.csrf(t, c)

	rec := f.serve(withCookie(form("/signout", url.Values{}), c))
	require.Equal(t, http.StatusForbidden, rec.Code)
	assert.Contains(t, errorMessage(t, rec), "missing CSRF token")

	rec = f.serve(withCookie(form("/signout", url.Values{session.CSRFField: {token}}), c))
	require.Equal(t, http.StatusSeeOther, rec.Code, rec.Body.String())
	require.NotEmpty(t, rec.Result().Cookies())
	assert.Equal(t, -1, rec.Result().Cookies()[0].MaxAge, "the cookie is cleared")

	rec = f.serve(withCookie(httptest.NewRequest(http.MethodGet, "/v1/models", nil), c))
	assert.Equal(t, http.StatusUnauthorized, rec.Code, "the session is gone after sign-out")
	rec = f.serve(withCookie(httptest.NewRequest(http.MethodGet, "/", nil), c))
	assert.Equal(t, http.StatusSeeOther, rec.Code)
	assert.True(t, strings.HasPrefix(rec.Header().Get("Location"), "/signin"), rec.Header().Get("Location"))
}

func TestSession_ARevokedKeyEndsItsSessions(t *testing.T) {
	f := newFixture(t)
	_, k, key := apitest.Workspace(t, f.db, "dash")
	c := f.signIn(t, key)
	require.NoError(t, store.RevokeAPIKey(context.Background(), f.db, k.ID))

	rec := f.serve(withCookie(httptest.NewRequest(http.MethodGet, "/v1/models", nil), c))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	var n int
	require.NoError(t, f.db.Get(&n, `SELECT count(*) FROM dashboard_sessions WHERE api_key_id = $1`, k.ID))
	assert.Zero(t, n, "the revoked key's sessions are deleted")

	rec = f.serve(form("/signin", url.Values{"api_key": {key}}))
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.Contains(t, rec.Body.String(), "revoked")
}

func TestPages_WithoutASessionGoToSignInAndBackAfter(t *testing.T) {
	f := newFixture(t)
	rec := f.serve(httptest.NewRequest(http.MethodGet, "/m/abc", nil))
	require.Equal(t, http.StatusSeeOther, rec.Code)
	assert.Equal(t, "/signin?next=%2Fm%2Fabc", rec.Header().Get("Location"))

	rec = f.serve(httptest.NewRequest(http.MethodGet, "/signin?next=//evil.example/", nil))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Contains(t, rec.Body.String(), `name="next" value="/"`, "a sign-in only returns to a path of this server")
	assert.Contains(t, rec.Body.String(), `<label for="api_key">`)

	for _, p := range []string{"/assets/app.js", "/assets/app.css"} {
		rec = f.serve(httptest.NewRequest(http.MethodGet, p, nil))
		assert.Equal(t, http.StatusOK, rec.Code, p)
	}
}
