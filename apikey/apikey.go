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

// ErrMalformed means the text is not shaped like a modelplane key.
var ErrMalformed = errors.New("malformed API key")

// Parse splits a key into its ID and secret. It is read by hand rather than by a regular
// expression: the gateway parses a key on every request.
func Parse(key string) (id, secret string, err error) {
	rest, ok := strings.CutPrefix(key, prefix)
	if !ok || len(rest) != idLen+1+secretLen || rest[idLen] != '_' {
		return "", "", ErrMalformed
	}
	id, secret = rest[:idLen], rest[idLen+1:]
	if !lowerAlnum(id) || !lowerAlnum(secret) {
		return "", "", ErrMalformed
	}
	return id, secret, nil
}

// lowerAlnum reports whether s is only lowercase ASCII letters and digits.
func lowerAlnum(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < 'a' || c > 'z') && (c < '0' || c > '9') {
			return false
		}
	}
	return true
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
