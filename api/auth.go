package api

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/labstack/echo/v4"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/session"
	"github.com/modelplane/modelplane/store"
)

// Principal is who a request acts as: the workspace its key belongs to.
type Principal struct {
	WorkspaceID string
	KeyID       string
	IsAdmin     bool
}

type principalKey struct{}

// PrincipalFrom returns the principal the auth middleware put on the context.
func PrincipalFrom(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(principalKey{}).(Principal)
	return p, ok
}

// WithPrincipal returns ctx carrying p.
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, principalKey{}, p)
}

// principal returns the request's principal; routes behind RequireKey always have one.
func principal(c echo.Context) Principal {
	p, _ := PrincipalFrom(c.Request().Context())
	return p
}

// RequireKey is echo middleware that authenticates the request's API key and puts its
// workspace on the request context. A missing, malformed, unknown or revoked key is 401.
// Without an Authorization header, the dashboard's session cookie stands for the key it was
// exchanged for; a change made that way must carry the session's CSRF token, else 403.
func RequireKey(db *sqlx.DB, log *slog.Logger) echo.MiddlewareFunc {
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			h := c.Request().Header.Get(echo.HeaderAuthorization)
			if h == "" {
				if _, err := c.Request().Cookie(session.CookieName); err == nil {
					return withSession(c, db, next)
				}
				return Errorf(http.StatusUnauthorized, "missing API key: send Authorization: Api-Key <key>")
			}
			text, ok := apikey.FromAuthorization(h)
			if !ok {
				return Errorf(http.StatusUnauthorized, "unsupported Authorization scheme: use Api-Key or Bearer")
			}
			id, secret, err := apikey.Parse(text)
			if err != nil {
				return Errorf(http.StatusUnauthorized, "malformed API key")
			}
			ctx := c.Request().Context()
			k, err := store.APIKeyByID(ctx, db, id)
			if errors.Is(err, store.ErrNotFound) || (err == nil && !apikey.Matches(k.SecretSHA256, secret)) {
				return Errorf(http.StatusUnauthorized, "invalid API key")
			}
			if err != nil {
				return Errorf(http.StatusServiceUnavailable, "cannot check API key: database unavailable")
			}
			if k.RevokedAt != nil {
				return Errorf(http.StatusUnauthorized, "API key revoked")
			}
			if k.LastUsedAt == nil || time.Since(*k.LastUsedAt) > time.Minute {
				if err := store.TouchAPIKey(ctx, db, k.ID); err != nil {
					log.Warn("recording API key use", "key_id", k.ID, "err", err)
				}
			}
			p := Principal{WorkspaceID: k.WorkspaceID, KeyID: k.ID, IsAdmin: k.IsAdmin}
			c.SetRequest(c.Request().WithContext(WithPrincipal(ctx, p)))
			return next(c)
		}
	}
}

// withSession authenticates the request by its session cookie.
func withSession(c echo.Context, db *sqlx.DB, next echo.HandlerFunc) error {
	ctx := c.Request().Context()
	s, err := session.FromRequest(ctx, db, c.Request())
	if errors.Is(err, session.ErrNone) {
		return Errorf(http.StatusUnauthorized, "session expired or signed out: sign in again, or send Authorization: Api-Key <key>")
	}
	if err != nil {
		return Errorf(http.StatusServiceUnavailable, "cannot check session: database unavailable")
	}
	if session.IsChange(c.Request()) {
		if err := session.CheckCSRF(c.Request(), s); err != nil {
			return Errorf(http.StatusForbidden, "%s", err.Error())
		}
	}
	p := Principal{WorkspaceID: s.WorkspaceID, KeyID: s.KeyID, IsAdmin: s.IsAdmin}
	c.SetRequest(c.Request().WithContext(WithPrincipal(ctx, p)))
	return next(c)
}
