// Package apikey makes and reads modelplane API keys.
//
// A key reads mp_<id>_<secret>: the ID (12 lowercase alphanumerics) finds the stored key,
// the secret (32 of them, about 165 bits) proves the caller has it. Only the secret's SHA-256
// is stored, so a database dump gives no usable key.
package apikey

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"regexp"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/store"
)

const (
	idLen     = 12
	secretLen = 32
	prefix    = "mp_"
)

var keyPattern = regexp.MustCompile(`^mp_([a-z0-9]{12})_([a-z0-9]{32})$`)

// ErrMalformed means the text is not shaped like a modelplane key.
var ErrMalformed = errors.New("malformed API key")

// Parse splits a key into its ID and secret.
func Parse(key string) (id, secret string, err error) {
	m := keyPattern.FindStringSubmatch(key)
	if m == nil {
		return "", "", ErrMalformed
	}
	return m[1], m[2], nil
}

// FromAuthorization reads the key from an Authorization header value, "Api-Key <key>" or
// "Bearer <key>" (scheme case-insensitive).
func FromAuthorization(h string) (string, bool) {
	scheme, key, ok := strings.Cut(strings.TrimSpace(h), " ")
	if !ok {
		return "", false
	}
	switch strings.ToLower(scheme) {
	case "api-key", "bearer":
		return strings.TrimSpace(key), true
	}
	return "", false
}

// Hash is what is stored for a secret.
func Hash(secret string) []byte {
	sum := sha256.Sum256([]byte(secret))
	return sum[:]
}

// Matches reports whether secret is the one whose hash is stored, in constant time.
func Matches(stored []byte, secret string) bool {
	return subtle.ConstantTimeCompare(stored, Hash(secret)) == 1
}

// Create makes a new key for the workspace and returns the stored record and the key text,
// which exists nowhere else: show it once.
func Create(ctx context.Context, db sqlx.ExtContext, workspaceID, name string, admin bool) (store.APIKey, string, error) {
	id, secret := modelplane.NewID(idLen), modelplane.NewID(secretLen)
	k, err := store.CreateAPIKey(ctx, db, store.APIKey{
		ID: id, WorkspaceID: workspaceID, Name: name, SecretSHA256: Hash(secret), IsAdmin: admin,
	})
	if err != nil {
		return store.APIKey{}, "", fmt.Errorf("create API key: %w", err)
	}
	return k, prefix + id + "_" + secret, nil
}
