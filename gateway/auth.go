package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/store"
)

// How long a key read from the database is trusted. A revocation evicts it at once through
// the routes notification; the TTL bounds staleness if that notification is lost.
const (
	keyTTL        = 30 * time.Second
	missingKeyTTL = 2 * time.Second
)

// keyCache keeps API keys so that an inference request costs no database read.
type keyCache struct {
	db *sqlx.DB
	mu sync.RWMutex
	m  map[string]cachedKey
}

type cachedKey struct {
	key     store.APIKey
	found   bool
	fetched time.Time
}

func newKeyCache(db *sqlx.DB) *keyCache { return &keyCache{db: db, m: map[string]cachedKey{}} }

// errKeyUnavailable means the key could not be checked (the database did not answer).
var errKeyUnavailable = errors.New("cannot check API key: database unavailable")

// authenticate returns the workspace of the key in the Authorization header, or the reason
// it is refused (shown to the client with 401).
func (k *keyCache) authenticate(ctx context.Context, header string) (workspaceID, refused string, err error) {
	if header == "" {
		return "", "missing API key: send Authorization: Api-Key <key>", nil
	}
	text, ok := apikey.FromAuthorization(header)
	if !ok {
		return "", "unsupported Authorization scheme: use Api-Key or Bearer", nil
	}
	id, secret, perr := apikey.Parse(text)
	if perr != nil {
		return "", "malformed API key", nil
	}
	c, err := k.get(ctx, id)
	if err != nil {
		return "", "", err
	}
	if !c.found || !apikey.Matches(c.key.SecretSHA256, secret) {
		return "", "invalid API key", nil
	}
	if c.key.RevokedAt != nil {
		return "", "API key revoked", nil
	}
	return c.key.WorkspaceID, "", nil
}

func (k *keyCache) get(ctx context.Context, id string) (cachedKey, error) {
	k.mu.RLock()
	c, ok := k.m[id]
	k.mu.RUnlock()
	now := time.Now()
	if ok && (now.Sub(c.fetched) < keyTTL && c.found || now.Sub(c.fetched) < missingKeyTTL) {
		return c, nil
	}
	key, err := store.APIKeyByID(ctx, k.db, id)
	switch {
	case errors.Is(err, store.ErrNotFound):
		c = cachedKey{fetched: now}
	case err != nil:
		return c, errKeyUnavailable
	default:
		c = cachedKey{key: key, found: true, fetched: now}
		// Refreshed at most once per TTL, so this write is rare.
		_ = store.TouchAPIKey(ctx, k.db, id)
	}
	k.mu.Lock()
	k.m[id] = c
	k.mu.Unlock()
	return c, nil
}

// notified evicts a key named in a routes notification; an empty payload (the listener
// reconnected and may have missed some) evicts them all.
func (k *keyCache) notified(payload string) {
	id, isKey := strings.CutPrefix(payload, store.APIKeyPayload)
	if payload != "" && !isKey {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if payload == "" {
		clear(k.m)
		return
	}
	delete(k.m, id)
}
