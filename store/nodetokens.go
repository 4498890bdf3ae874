package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"time"

	"github.com/jmoiron/sqlx"
)

// NodeToken is a node's own token as recorded: its SHA-256, never the token.
type NodeToken struct {
	ID          string     `db:"id"`
	NodeName    string     `db:"node_name"`
	TokenSHA256 []byte     `db:"token_sha256"`
	CreatedAt   time.Time  `db:"created_at"`
	RevokedAt   *time.Time `db:"revoked_at"`
}

// CreateNodeToken records a token issued to a node.
func CreateNodeToken(ctx context.Context, db sqlx.ExtContext, t NodeToken) error {
	_, err := db.ExecContext(ctx, `INSERT INTO node_tokens (id, node_name, token_sha256) VALUES ($1, $2, $3)`,
		t.ID, t.NodeName, t.TokenSHA256)
	if err != nil {
		return fmt.Errorf("node token: %w", err)
	}
	return nil
}

// ActiveNodeTokenBySHA256 is the unrevoked token with this SHA-256; ErrNotFound when there
// is none.
func ActiveNodeTokenBySHA256(ctx context.Context, db sqlx.QueryerContext, sum []byte) (NodeToken, error) {
	var t NodeToken
	err := sqlx.GetContext(ctx, db, &t, `SELECT id, node_name, token_sha256, created_at, revoked_at
		FROM node_tokens WHERE token_sha256 = $1 AND revoked_at IS NULL`, sum)
	if errors.Is(err, sql.ErrNoRows) {
		return t, ErrNotFound
	}
	return t, err
}

// NodeHasActiveToken says whether a node name has an unrevoked token of its own.
func NodeHasActiveToken(ctx context.Context, db sqlx.QueryerContext, nodeName string) (bool, error) {
	var ok bool
	err := sqlx.GetContext(ctx, db, &ok, `SELECT EXISTS (SELECT 1 FROM node_tokens WHERE node_name = $1 AND revoked_at IS NULL)`, nodeName)
	return ok, err
}

// NodeCredential is how the node with this ID last authenticated its heartbeat: the SHA-256
// it was recorded with and, when that is an unrevoked token of its own, that token's ID
// ("" otherwise).
func NodeCredential(ctx context.Context, db sqlx.QueryerContext, nodeID string) (name string, sum []byte, tokenID string, err error) {
	var row struct {
		Name    string         `db:"name"`
		Sum     []byte         `db:"token_sha256"`
		TokenID sql.NullString `db:"token_id"`
	}
	err = sqlx.GetContext(ctx, db, &row, `SELECT n.name, n.token_sha256, t.id AS token_id
		FROM nodes n LEFT JOIN node_tokens t ON t.token_sha256 = n.token_sha256 AND t.node_name = n.name AND t.revoked_at IS NULL
		WHERE n.id = $1`, nodeID)
	if errors.Is(err, sql.ErrNoRows) {
		return "", nil, "", ErrNotFound
	}
	return row.Name, row.Sum, row.TokenID.String, err
}

// ListNodeTokens lists every token issued, newest first.
func ListNodeTokens(ctx context.Context, db sqlx.QueryerContext) ([]NodeToken, error) {
	out := []NodeToken{}
	err := sqlx.SelectContext(ctx, db, &out, `SELECT id, node_name, token_sha256, created_at, revoked_at
		FROM node_tokens ORDER BY created_at DESC, id`)
	return out, err
}

// RevokeNodeToken revokes a token at once; ErrNotFound when there is no such token or it is
// revoked already.
func RevokeNodeToken(ctx context.Context, db sqlx.ExtContext, id string) error {
	res, err := db.ExecContext(ctx, `UPDATE node_tokens SET revoked_at = now() WHERE id = $1 AND revoked_at IS NULL`, id)
	if err != nil {
		return err
	}
	if n, _ := res.RowsAffected(); n == 0 {
		return ErrNotFound
	}
	return nil
}
