package gateway_test

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/gateway"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/testmodel"
)

// randomKey is a well-formed key that no database has.
func randomKey() string { return "mp_" + modelplane.NewID(12) + "_" + modelplane.NewID(32) }

// keyDB is a test database with a workspace and one key, returned as its text.
func keyDB(t *testing.T) (*sqlx.DB, store.APIKey, string) {
	t.Helper()
	ctx := context.Background()
	db, err := store.Open(ctx, dbURL)
	require.NoError(t, err)
	t.Cleanup(func() { db.Close() })
	ws, _, err := store.EnsureWorkspace(ctx, db, "keys-"+modelplane.NewID(6))
	require.NoError(t, err)
	k, text, err := apikey.Create(ctx, db, ws.ID, "known", false)
	require.NoError(t, err)
	return db, k, text
}

func TestKeyCache_StaysWithinItsSizeAndKeepsKnownKeysWhileUnknownKeysStreamIn(t *testing.T) {
	ctx := context.Background()
	db, k, known := keyDB(t)
	now := time.Now()
	const size = 1000
	c := gateway.NewKeyCache(db, size, func() time.Time { return now })

	ws, refused, err := c.Authenticate(ctx, "Api-Key "+known)
	require.NoError(t, err)
	require.Empty(t, refused)
	require.Equal(t, k.WorkspaceID, ws)
	require.EqualValues(t, 1, c.Lookups())

	for i := range 10000 {
		_, refused, err := c.Authenticate(ctx, "Api-Key "+randomKey())
		require.NoError(t, err)
		require.Equal(t, "invalid API key", refused)
		found, missing := c.Len()
		require.LessOrEqual(t, found+missing, size, "after %d unknown keys", i+1)
		// Further apart than the cache's size: a plain LRU would have dropped the key by then.
		if i%1500 == 1499 {
			before := c.Lookups()
			ws, refused, err := c.Authenticate(ctx, "Bearer "+known)
			require.NoError(t, err)
			require.Empty(t, refused, "after %d unknown keys", i+1)
			assert.Equal(t, k.WorkspaceID, ws)
			require.Equal(t, before, c.Lookups(), "the known key was evicted by %d unknown keys", i+1)
		}
	}
	found, missing := c.Len()
	assert.Equal(t, 1, found)
	assert.Equal(t, size/4, missing, "unknown keys fill only their share")
	assert.EqualValues(t, 10001, c.Lookups(), "each unknown key was read once, the known key once")
}

func TestKeyCache_LooksKeysUpAgainAfterTheirTTLOrANotification(t *testing.T) {
	ctx := context.Background()
	db, k, known := keyDB(t)
	now := time.Now()
	c := gateway.NewKeyCache(db, 100, func() time.Time { return now })
	unknown := "Api-Key " + randomKey()
	auth := func(header string) string {
		t.Helper()
		_, refused, err := c.Authenticate(ctx, header)
		require.NoError(t, err)
		return refused
	}

	require.Equal(t, "invalid API key", auth(unknown))
	require.Equal(t, "invalid API key", auth(unknown))
	require.EqualValues(t, 1, c.Lookups(), "an unknown key is remembered for a while")
	now = now.Add(1900 * time.Millisecond)
	auth(unknown)
	require.EqualValues(t, 1, c.Lookups())
	now = now.Add(200 * time.Millisecond)
	require.Equal(t, "invalid API key", auth(unknown))
	require.EqualValues(t, 2, c.Lookups(), "past its two seconds an unknown key is read again")

	require.Empty(t, auth("Api-Key "+known))
	require.Empty(t, auth("Api-Key "+known))
	require.EqualValues(t, 3, c.Lookups())
	now = now.Add(29 * time.Second)
	require.Empty(t, auth("Api-Key "+known))
	require.EqualValues(t, 3, c.Lookups(), "a found key is trusted for 30 seconds")
	now = now.Add(2 * time.Second)
	require.Empty(t, auth("Api-Key "+known))
	require.EqualValues(t, 4, c.Lookups(), "past its 30 seconds a found key is read again")

	c.Notified("deployment:whatever")
	require.Empty(t, auth("Api-Key "+known))
	require.EqualValues(t, 4, c.Lookups(), "a notification about something else keeps the key")
	require.NoError(t, store.RevokeAPIKey(ctx, db, k.ID))
	c.Notified(store.APIKeyPayload + k.ID)
	require.Equal(t, "API key revoked", auth("Api-Key "+known), "a notification evicts the key at once")
	require.EqualValues(t, 5, c.Lookups())
	c.Notified("")
	auth("Api-Key " + known)
	auth(unknown)
	require.EqualValues(t, 7, c.Lookups(), "an empty notification evicts every key, found or not")
}

func TestFailedAuthentications_BeyondTheLimitAre429ForThatAddressOnly(t *testing.T) {
	f := newFixture(t, gateway.Options{FailedAuthRateLimit: 0.01, FailedAuthBurst: 3})
	s := newServer(t, "s", testmodel.Options{})
	d := f.deployment("", false, s.addr())
	f.eventually("deployment/"+d.ID, http.StatusOK)
	h := f.gw.Handler(nil)
	serve := func(addr, key string, header ...string) answer {
		t.Helper()
		req := httptest.NewRequest(http.MethodPost, "/models/"+f.model.ID+"/deployment/"+d.ID+"/predict", strings.NewReader("{}"))
		req.RemoteAddr = addr + ":40000"
		req.Header.Set("Authorization", "Api-Key "+key)
		for i := 0; i+1 < len(header); i += 2 {
			req.Header.Set(header[i], header[i+1])
		}
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		return answer{rec.Code, rec.Header(), rec.Body.String()}
	}

	for i := range 3 {
		a := serve("192.0.2.1", randomKey())
		require.Equal(t, http.StatusUnauthorized, a.status, "failure %d is within the burst", i+1)
	}
	a := serve("192.0.2.1", randomKey())
	require.Equal(t, http.StatusTooManyRequests, a.status, a.body)
	assert.Contains(t, errorMessage(t, a), "too many failed authentications")
	wait, err := strconv.Atoi(a.header.Get("Retry-After"))
	require.NoError(t, err, "Retry-After %q", a.header.Get("Retry-After"))
	assert.Greater(t, wait, 1, "one token every 100 seconds")
	assert.Equal(t, http.StatusTooManyRequests,
		serve("192.0.2.1", randomKey(), "X-Forwarded-For", "198.51.100.7").status, "X-Forwarded-For is not trusted")

	assert.Equal(t, http.StatusUnauthorized, serve("192.0.2.2", randomKey()).status, "another address is not limited")
	ok := serve("192.0.2.1", f.key)
	assert.Equal(t, http.StatusOK, ok.status, "a valid key from the limited address still works: %s", ok.body)
	assert.Equal(t, http.StatusTooManyRequests, serve("192.0.2.1", randomKey()).status,
		"a success does not refill the address's bucket")
}
