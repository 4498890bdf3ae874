// Package session is the dashboard's sign-in: an API key checked once and exchanged for a
// random session ID that the browser holds in a cookie. The server keeps only the ID's
// SHA-256, with the key it acts as and a CSRF token every change must carry.
package session

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane/store"
)

const (
	// CookieName is the cookie that holds the session ID.
	CookieName = "modelplane_session"
	// CSRFHeader is where a script sends the session's CSRF token.
	CSRFHeader = "X-CSRF-Token"
	// CSRFField is the hidden form field that carries the session's CSRF token.
	CSRFField = "csrf_token"
	// Lifetime is how long a session lasts after sign-in.
	Lifetime = 12 * time.Hour
)

// ErrNone is a request without a session that is live: no cookie, an unknown or expired
// session, or one whose key was revoked.
var ErrNone = errors.New("no session")

// Session is a live session as a request sees it.
type Session struct {
	IDSHA256    []byte
	KeyID       string
	WorkspaceID string
	IsAdmin     bool
	CSRFToken   string
}

// Start stores a new session acting as key and returns the ID the browser is to hold.
func Start(ctx context.Context, db sqlx.ExecerContext, key store.APIKey) (id string, s Session, err error) {
	id, csrf := random(), random()
	sum := sha256.Sum256([]byte(id))
	err = store.CreateDashboardSession(ctx, db, store.DashboardSession{IDSHA256: sum[:], APIKeyID: key.ID,
		WorkspaceID: key.WorkspaceID, CSRFToken: csrf, ExpiresAt: time.Now().Add(Lifetime)})
	return id, Session{IDSHA256: sum[:], KeyID: key.ID, WorkspaceID: key.WorkspaceID, IsAdmin: key.IsAdmin, CSRFToken: csrf}, err
}

// FromRequest returns the request's live session, or ErrNone. A session whose key was
// revoked is deleted, with the key's other sessions.
func FromRequest(ctx context.Context, db *sqlx.DB, r *http.Request) (Session, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" {
		return Session{}, ErrNone
	}
	sum := sha256.Sum256([]byte(c.Value))
	a, err := store.DashboardSessionByHash(ctx, db, sum[:])
	if errors.Is(err, store.ErrNotFound) {
		return Session{}, ErrNone
	}
	if err != nil {
		return Session{}, err
	}
	if a.KeyRevokedAt != nil {
		if err := store.DeleteKeyDashboardSessions(ctx, db, a.APIKeyID); err != nil {
			return Session{}, err
		}
		return Session{}, ErrNone
	}
	if time.Since(a.LastSeenAt) > time.Minute {
		_ = store.TouchDashboardSession(ctx, db, sum[:]) // a missed touch loses nothing
	}
	return Session{IDSHA256: sum[:], KeyID: a.APIKeyID, WorkspaceID: a.WorkspaceID, IsAdmin: a.KeyIsAdmin, CSRFToken: a.CSRFToken}, nil
}

// End deletes the session.
func End(ctx context.Context, db sqlx.ExecerContext, s Session) error {
	return store.DeleteDashboardSession(ctx, db, s.IDSHA256)
}

// IsChange says whether the request changes something, and so must carry the CSRF token.
func IsChange(r *http.Request) bool {
	return r.Method != http.MethodGet && r.Method != http.MethodHead && r.Method != http.MethodOptions
}

// CheckCSRF returns nil when the request carries the session's CSRF token, in the header or,
// for a form, in its hidden field; otherwise a message saying what is wrong.
func CheckCSRF(r *http.Request, s Session) error {
	token := r.Header.Get(CSRFHeader)
	if token == "" && isForm(r) {
		token = r.PostFormValue(CSRFField)
	}
	if token == "" {
		return errors.New("missing CSRF token: a change made with the session cookie must send the session's token in the " + CSRFHeader + " header (or the " + CSRFField + " form field)")
	}
	if subtle.ConstantTimeCompare([]byte(token), []byte(s.CSRFToken)) != 1 {
		return errors.New("invalid CSRF token: it is not this session's")
	}
	return nil
}

func isForm(r *http.Request) bool {
	ct := r.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "application/x-www-form-urlencoded") || strings.HasPrefix(ct, "multipart/form-data")
}

// SetCookie gives the browser the session ID: HttpOnly so that no script reads it,
// SameSite=Strict so that no other site's page sends it, Secure when the request came over
// TLS (directly or, as a proxy says, in front of us).
func SetCookie(w http.ResponseWriter, r *http.Request, id string) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: id, Path: "/", HttpOnly: true, Secure: overTLS(r),
		SameSite: http.SameSiteStrictMode, MaxAge: int(Lifetime / time.Second)})
}

// ClearCookie tells the browser to drop the session cookie.
func ClearCookie(w http.ResponseWriter, r *http.Request) {
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", HttpOnly: true, Secure: overTLS(r),
		SameSite: http.SameSiteStrictMode, MaxAge: -1})
}

func overTLS(r *http.Request) bool {
	return r.TLS != nil || strings.EqualFold(r.Header.Get("X-Forwarded-Proto"), "https")
}

// random is 32 bytes from the system's generator, URL-safe.
func random() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // crypto/rand.Read never fails (Go 1.24+)
	return base64.RawURLEncoding.EncodeToString(b)
}
