package gateway

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/lru"
	"github.com/modelplane/modelplane/store"
)

// How long a key read from the database is trusted. A revocation evicts it at once through
// the routes notification; the TTL bounds staleness if that notification is lost. An
// unknown key is remembered only briefly: key creation sends no notification, so a key
// tried just before it was created must start working soon after.
const (
	keyTTL        = 30 * time.Second
	missingKeyTTL = 2 * time.Second
)

// missingShare is the part of the key cache unknown keys may take (one in missingShare
// entries): they have a cache of their own, so a flood of made-up keys evicts only other
// made-up keys, never the keys clients use.
const missingShare = 4

// keyCache keeps API keys so that an inference request costs no database read. It holds at
// most its size in keys, found and unknown together, dropping the least recently used.
type keyCache struct {
	db  *sqlx.DB
	now func() time.Time
	mu  sync.Mutex
	// found holds keys the database has, missing the time an unknown key was looked up.
	found   *lru.LRU[string, cachedKey]
	missing *lru.LRU[string, time.Time]
	// lookups counts database reads, for tests.
	lookups atomic.Int64
}

type cachedKey struct {
	key     store.APIKey
	found   bool
	fetched time.Time
}

// newKeyCache makes a cache of size keys, of which a missingShare-th at most unknown ones.
func newKeyCache(db *sqlx.DB, size int, now func() time.Time) *keyCache {
	missing := max(1, size/missingShare)
	return &keyCache{db: db, now: now,
		found: lru.New[string, cachedKey](max(1, size-missing)), missing: lru.New[string, time.Time](missing)}
}

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
	now := k.now()
	k.mu.Lock()
	if c, ok := k.found.Get(id); ok && now.Sub(c.fetched) < keyTTL {
		k.mu.Unlock()
		return c, nil
	}
	if at, ok := k.missing.Get(id); ok && now.Sub(at) < missingKeyTTL {
		k.mu.Unlock()
		return cachedKey{fetched: at}, nil
	}
	k.mu.Unlock()
	k.lookups.Add(1)
	key, err := store.APIKeyByID(ctx, k.db, id)
	var c cachedKey
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
	if c.found {
		k.missing.Remove(id)
		k.found.Put(id, c)
	} else {
		k.found.Remove(id)
		k.missing.Put(id, now)
	}
	k.mu.Unlock()
	return c, nil
}

// len returns how many found and unknown keys the cache holds.
func (k *keyCache) len() (found, missing int) {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.found.Len(), k.missing.Len()
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
		k.found.Clear()
		k.missing.Clear()
		return
	}
	k.found.Remove(id)
	k.missing.Remove(id)
}
