// Package secretbox seals workspace secret values for storage: AES-256-GCM with a random
// nonce per value, and the secret's workspace and name as additional data, so a sealed value
// opens only in the row it was written to. The key is 32 bytes, read from a file or from an
// environment variable (base64).
package secretbox

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"strings"
)

// KeySize is the key's length in bytes (AES-256).
const KeySize = 32

// ErrOpen means a sealed value did not open: another key sealed it, it was changed, or it
// belongs to another workspace or name.
var ErrOpen = errors.New("secret value does not decrypt with this key (another key sealed it, or it was altered or moved)")

// Key seals and opens secret values.
type Key struct {
	aead cipher.AEAD
	// derive is the key Derive signs with, itself derived so that it is never the AES key.
	derive []byte
}

// NewKey makes a Key of 32 raw bytes.
func NewKey(raw []byte) (*Key, error) {
	if len(raw) != KeySize {
		return nil, fmt.Errorf("secrets key: must be %d bytes, not %d", KeySize, len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	m := hmac.New(sha256.New, raw)
	m.Write([]byte("modelplane-derive"))
	return &Key{aead: aead, derive: m.Sum(nil)}, nil
}

// ParseKey reads a key written as base64 (standard or URL alphabet, padded or not),
// surrounding white space ignored.
func ParseKey(text string) (*Key, error) {
	text = strings.TrimSpace(text)
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if raw, err := enc.DecodeString(text); err == nil {
			return NewKey(raw)
		}
	}
	return nil, fmt.Errorf("secrets key: not base64 of %d bytes", KeySize)
}

// Load reads the key from file when it is set, else from envValue (base64) when that is
// set; with neither it answers nil and no error: secrets are then off.
func Load(file, envValue string) (*Key, error) {
	switch {
	case file != "":
		b, err := os.ReadFile(file)
		if err != nil {
			return nil, fmt.Errorf("secrets key file: %w", err)
		}
		k, err := ParseKey(string(b))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		return k, nil
	case envValue != "":
		return ParseKey(envValue)
	}
	return nil, nil
}

// Generate makes a new random key, base64 encoded, as a key file holds it.
func Generate() (string, error) {
	raw := make([]byte, KeySize)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	return base64.StdEncoding.EncodeToString(raw), nil
}

// Derive is a 32-byte value only this key makes from purpose and parts (HMAC-SHA256): a
// secret that whoever holds the key can make again, so that it need not be stored.
func (k *Key) Derive(purpose string, parts ...string) []byte {
	m := hmac.New(sha256.New, k.derive)
	m.Write([]byte(purpose))
	for _, p := range parts {
		m.Write([]byte{0})
		m.Write([]byte(p))
	}
	return m.Sum(nil)
}

// additionalData binds a sealed value to its row.
func additionalData(workspaceID, name string) []byte {
	return []byte("modelplane-secret\x00" + workspaceID + "\x00" + name)
}

// Seal encrypts value for the workspace's secret name: nonce followed by ciphertext and tag.
func (k *Key) Seal(workspaceID, name string, value []byte) ([]byte, error) {
	nonce := make([]byte, k.aead.NonceSize(), k.aead.NonceSize()+len(value)+k.aead.Overhead())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return k.aead.Seal(nonce, nonce, value, additionalData(workspaceID, name)), nil
}

// Open decrypts what Seal made for the same workspace and name; anything else fails with
// ErrOpen.
func (k *Key) Open(workspaceID, name string, sealed []byte) ([]byte, error) {
	n := k.aead.NonceSize()
	if len(sealed) < n+k.aead.Overhead() {
		return nil, ErrOpen
	}
	out, err := k.aead.Open(nil, sealed[:n], sealed[n:], additionalData(workspaceID, name))
	if err != nil {
		return nil, ErrOpen
	}
	return out, nil
}
