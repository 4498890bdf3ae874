// Package nodeauth is how node agents and the control plane prove who they are to each
// other: a token of each node's own, issued by an operator and kept only as its SHA-256, or
// the cluster's one shared node token of older setups.
//
// A node's token is made from the secrets key, the token's ID and the node's name
// (secretbox.Key.Derive), so that the control plane, which holds that key, can present to
// each agent that agent's own token without the token being stored anywhere.
package nodeauth

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/base64"
	"errors"
	"fmt"
	"strings"

	"github.com/jmoiron/sqlx"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
)

// Prefix starts every node's own token, so that a leaked one is recognisable.
const Prefix = "mpn_"

// purpose separates node tokens from anything else the secrets key derives.
const purpose = "modelplane-node-token"

// ErrUnauthorized is a token that is no node's: unknown, revoked, or presented for a node
// it was not issued to.
var ErrUnauthorized = errors.New("missing, wrong or revoked node token")

// ErrNoKey means node tokens of their own cannot be made without the secrets key.
var ErrNoKey = errors.New("node tokens of their own need the secrets key (--secrets-key-file or MODELPLANE_SECRETS_KEY)")

// Token is the token with this ID issued to node name.
func Token(key *secretbox.Key, id, name string) string {
	return Prefix + id + "_" + base64.RawURLEncoding.EncodeToString(key.Derive(purpose, id, name))
}

// Sum is what is stored of a token.
func Sum(token string) []byte {
	s := sha256.Sum256([]byte(token))
	return s[:]
}

// Issue makes a new token for node name and records its SHA-256; the token is answered
// once, here.
func Issue(ctx context.Context, db sqlx.ExtContext, key *secretbox.Key, name string) (store.NodeToken, string, error) {
	if key == nil {
		return store.NodeToken{}, "", ErrNoKey
	}
	if name == "" || len(name) > 255 {
		return store.NodeToken{}, "", errors.New("node name: required, at most 255 characters")
	}
	t := store.NodeToken{ID: modelplane.NewID(12), NodeName: name}
	token := Token(key, t.ID, name)
	t.TokenSHA256 = Sum(token)
	if err := store.CreateNodeToken(ctx, db, t); err != nil {
		return store.NodeToken{}, "", err
	}
	return t, token, nil
}

// Identity is who presented a token to the API.
type Identity struct {
	// Node is the node name a token of its own was issued to; empty for the shared token,
	// which names no node.
	Node string
	// Sum is the SHA-256 of the token presented, recorded with the node's heartbeat.
	Sum []byte
}

// Shared says whether the shared node token was presented.
func (id Identity) Shared() bool { return id.Node == "" }

// Authenticate tells whose the token is: the shared token (when shared is set) or a node's
// unrevoked token of its own. Anything else is ErrUnauthorized.
func Authenticate(ctx context.Context, db sqlx.QueryerContext, shared, token string) (Identity, error) {
	if token == "" {
		return Identity{}, ErrUnauthorized
	}
	sum := Sum(token)
	if shared != "" && subtle.ConstantTimeCompare([]byte(token), []byte(shared)) == 1 {
		return Identity{Sum: sum}, nil
	}
	if !strings.HasPrefix(token, Prefix) {
		return Identity{}, ErrUnauthorized
	}
	t, err := store.ActiveNodeTokenBySHA256(ctx, db, sum)
	if errors.Is(err, store.ErrNotFound) {
		return Identity{}, ErrUnauthorized
	}
	if err != nil {
		return Identity{}, err
	}
	return Identity{Node: t.NodeName, Sum: sum}, nil
}

// MayActAs says whether id may report as, or download for, node name: a token of its own
// only for the node it was issued to; the shared token only for a node that has no
// unrevoked token of its own, so that it cannot take over a node that moved off it.
func MayActAs(ctx context.Context, db sqlx.QueryerContext, id Identity, name string) (bool, error) {
	if !id.Shared() {
		return id.Node == name, nil
	}
	has, err := store.NodeHasActiveToken(ctx, db, name)
	return !has && err == nil, err
}

// Agents makes the control plane's clients of node agents, each presenting the credential
// its node reports with.
type Agents struct {
	DB sqlx.QueryerContext
	// Shared is the cluster's shared node token; empty when there is none.
	Shared string
	// Key makes nodes' own tokens again; nil when the secrets key is not set.
	Key *secretbox.Key
	// TLS is what calls to https:// agents trust; nil means the system's authorities.
	TLS *tls.Config
}

// Token is what to present to the agent of node nodeID: the node's own token when its
// heartbeats come with an unrevoked one, the shared token when they come with that, and an
// error otherwise. The shared token is never sent to a node that reports with a token of its
// own, which would let that node act as any other.
func (a Agents) Token(ctx context.Context, nodeID string) (string, error) {
	name, sum, tokenID, err := store.NodeCredential(ctx, a.DB, nodeID)
	if err != nil {
		return "", fmt.Errorf("node %s: %w", nodeID, err)
	}
	switch {
	case tokenID != "" && a.Key == nil:
		return "", fmt.Errorf("node %s reports with a token of its own: %w", name, ErrNoKey)
	case tokenID != "":
		return Token(a.Key, tokenID, name), nil
	case a.Shared != "" && subtle.ConstantTimeCompare(sum, Sum(a.Shared)) == 1:
		return a.Shared, nil
	}
	return "", fmt.Errorf("node %s: no credential to call its agent with (its token was revoked, or it reports with a shared token this process does not have)", name)
}

// Client is a client of the agent of node nodeID at url.
func (a Agents) Client(ctx context.Context, nodeID, url string) (*agentproto.Client, error) {
	token, err := a.Token(ctx, nodeID)
	if err != nil {
		return nil, err
	}
	return agentproto.NewClient(url, token).WithTLS(a.TLS), nil
}
