package store

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"
)

// AuditEvent is one thing someone did: which key, what action, on which object.
type AuditEvent struct {
	ID          int64     `db:"id"`
	WorkspaceID string    `db:"workspace_id"`
	ModelID     string    `db:"model_id"`
	Actor       string    `db:"actor"`
	Action      string    `db:"action"`
	Target      string    `db:"target"`
	Details     JSONMap   `db:"details"`
	CreatedAt   time.Time `db:"created_at"`
}

// RecordAudit appends an event; inside a transaction it is kept only if the change is.
func RecordAudit(ctx context.Context, db sqlx.ExecerContext, e AuditEvent) error {
	return exec(ctx, db, false, `
		INSERT INTO audit_events (workspace_id, model_id, actor, action, target, details)
		VALUES ($1, $2, $3, $4, $5, $6)`, e.WorkspaceID, e.ModelID, e.Actor, e.Action, e.Target, e.Details)
}

// ListAudit returns a model's events, newest first, at most limit of them, and only those
// older than event before when before is not 0 (for paging).
func ListAudit(ctx context.Context, db sqlx.QueryerContext, workspaceID, modelID string, before int64, limit int) ([]AuditEvent, error) {
	out := []AuditEvent{}
	err := list(ctx, db, &out, `
		SELECT * FROM audit_events
		WHERE workspace_id = $1 AND model_id = $2 AND ($3::bigint = 0 OR id < $3::bigint)
		ORDER BY id DESC LIMIT $4`, workspaceID, modelID, before, limit)
	return out, err
}

// AuditFilter says which events AuditEvents lists. WorkspaceID is required; every other
// zero field lets everything through.
type AuditFilter struct {
	WorkspaceID string
	// ModelID keeps one model's events.
	ModelID string
	// Actions keeps only these actions when not nil (an empty, non-nil list keeps none).
	Actions []string
	// KeyActorsOnly keeps what API keys did, leaving out what workflows recorded themselves
	// (a promotion's own stages, actor "promotion:<id>").
	KeyActorsOnly bool
	// Actors keeps the events of these actors (API key IDs).
	Actors []string
	// DeploymentIDs keeps the events about one of these deployments: the event's target,
	// its details' deployment_id, or the deployment its promotion promoted.
	DeploymentIDs []string
	// Environments keeps the events of EnvironmentActions whose target is one of these
	// environments.
	Environments       []string
	EnvironmentActions []string
	// Search keeps events whose target, model ID or name, or deployment ID or name holds it,
	// in any case.
	Search string
	// From and To bound the events' time, both inclusive.
	From, To *time.Time
	// Ascending lists oldest first; the default is newest first. A cursor keeps the order
	// of the page it came from.
	Ascending bool
}

// AuditCursor is where a page of AuditEvents ended: the next page starts after it.
type AuditCursor struct {
	Ascending bool
	At        time.Time
	ID        int64
}

// String is the cursor as an opaque token for a URL.
func (c AuditCursor) String() string {
	dir := "d"
	if c.Ascending {
		dir = "a"
	}
	raw := fmt.Sprintf("v1.%s.%d.%d", dir, c.At.UnixMicro(), c.ID)
	return base64.RawURLEncoding.EncodeToString([]byte(raw))
}

// ErrBadCursor is returned by ParseAuditCursor for a token that no page gave.
var ErrBadCursor = errors.New("not a cursor from a previous page")

// ParseAuditCursor reads a token made by AuditCursor.String.
func ParseAuditCursor(s string) (AuditCursor, error) {
	raw, err := base64.RawURLEncoding.DecodeString(s)
	if err != nil {
		return AuditCursor{}, ErrBadCursor
	}
	parts := strings.Split(string(raw), ".")
	if len(parts) != 4 || parts[0] != "v1" || (parts[1] != "a" && parts[1] != "d") {
		return AuditCursor{}, ErrBadCursor
	}
	micros, err1 := strconv.ParseInt(parts[2], 10, 64)
	id, err2 := strconv.ParseInt(parts[3], 10, 64)
	if err1 != nil || err2 != nil || id < 1 {
		return AuditCursor{}, ErrBadCursor
	}
	return AuditCursor{Ascending: parts[1] == "a", At: time.UnixMicro(micros).UTC(), ID: id}, nil
}

// AuditRecord is an event with the names of what it is about, as far as they are still
// known: a deleted model keeps its name through the model_name its deletion recorded.
type AuditRecord struct {
	AuditEvent
	ModelName string `db:"model_name"`
	// DeploymentID is the deployment the event is about, when there is one.
	DeploymentID   string `db:"deployment_ref"`
	DeploymentName string `db:"deployment_name"`
	// KeyName is the acting key's name, when the actor is a key that has one.
	KeyName string `db:"key_name"`
}

// AuditPage is one page of AuditEvents; Next is set when more events follow.
type AuditPage struct {
	Records []AuditRecord
	Next    *AuditCursor
}

// AuditEvents pages through a workspace's audit events, newest first unless f.Ascending,
// at most limit at a time, after cursor when it is not nil. Events are ordered by time, then
// by ID, so a page boundary never skips or repeats one.
func AuditEvents(ctx context.Context, db sqlx.QueryerContext, f AuditFilter, cursor *AuditCursor, limit int) (AuditPage, error) {
	if limit < 1 {
		limit = 1
	}
	asc := f.Ascending
	if cursor != nil {
		asc = cursor.Ascending
	}
	args := []any{f.WorkspaceID}
	arg := func(v any) string {
		args = append(args, v)
		return "$" + strconv.Itoa(len(args))
	}
	var where []string
	if f.ModelID != "" {
		where = append(where, "r.model_id = "+arg(f.ModelID))
	}
	if f.Actions != nil {
		where = append(where, "r.action = ANY("+arg(pq.Array(f.Actions))+")")
	}
	if f.KeyActorsOnly {
		// API key IDs are 12 lowercase alphanumerics (a check on api_keys); workflows record
		// themselves as "promotion:<id>".
		where = append(where, `r.actor ~ '^[a-z0-9]{12}$'`)
	}
	if len(f.Actors) > 0 {
		where = append(where, "r.actor = ANY("+arg(pq.Array(f.Actors))+")")
	}
	if len(f.DeploymentIDs) > 0 {
		ids := arg(pq.Array(f.DeploymentIDs))
		where = append(where, "(r.deployment_ref = ANY("+ids+") OR r.target = ANY("+ids+"))")
	}
	if len(f.Environments) > 0 {
		where = append(where, "(r.target = ANY("+arg(pq.Array(f.Environments))+") AND r.action = ANY("+
			arg(pq.Array(f.EnvironmentActions))+"))")
	}
	if f.Search != "" {
		p := arg("%" + likeEscaper.Replace(f.Search) + "%")
		where = append(where, "(r.target ILIKE "+p+" OR r.model_id ILIKE "+p+" OR r.model_name ILIKE "+p+
			" OR r.deployment_ref ILIKE "+p+" OR r.deployment_name ILIKE "+p+")")
	}
	if f.From != nil {
		where = append(where, "r.created_at >= "+arg(*f.From))
	}
	if f.To != nil {
		where = append(where, "r.created_at <= "+arg(*f.To))
	}
	order := "DESC"
	if asc {
		order = "ASC"
	}
	if cursor != nil {
		cmp := "<"
		if asc {
			cmp = ">"
		}
		where = append(where, "(r.created_at, r.id) "+cmp+" ("+arg(cursor.At)+", "+arg(cursor.ID)+")")
	}
	cond := "true"
	if len(where) > 0 {
		cond = strings.Join(where, " AND ")
	}
	query := `
		WITH r AS (
			SELECT e.*,
			       coalesce(m.name, (SELECT x.details->>'model_name' FROM audit_events x
			                         WHERE x.workspace_id = e.workspace_id AND x.model_id = e.model_id
			                           AND e.model_id <> '' AND x.details->>'model_name' IS NOT NULL
			                         ORDER BY x.id DESC LIMIT 1), '') AS model_name,
			       coalesce(d.id, e.details->>'deployment_id', p.candidate_deployment_id,
			                p.source_deployment_id, '') AS deployment_ref,
			       coalesce(d.name, '') AS deployment_name,
			       coalesce(k.name, '') AS key_name
			FROM audit_events e
			LEFT JOIN models m ON m.id = e.model_id AND m.workspace_id = e.workspace_id
			LEFT JOIN promotions p ON p.id = e.details->>'promotion_id' AND p.model_id = e.model_id
			LEFT JOIN deployments d ON d.model_id = e.model_id AND d.id = coalesce(
			    e.details->>'deployment_id', p.candidate_deployment_id, p.source_deployment_id, e.target)
			LEFT JOIN api_keys k ON k.id = e.actor AND k.workspace_id = e.workspace_id
			WHERE e.workspace_id = $1
		)
		SELECT * FROM r WHERE ` + cond + `
		ORDER BY r.created_at ` + order + `, r.id ` + order + `
		LIMIT ` + arg(limit+1)
	var recs []AuditRecord
	if err := list(ctx, db, &recs, query, args...); err != nil {
		return AuditPage{}, err
	}
	page := AuditPage{Records: recs}
	if len(recs) > limit {
		page.Records = recs[:limit]
		last := recs[limit-1]
		page.Next = &AuditCursor{Ascending: asc, At: last.CreatedAt, ID: last.ID}
	}
	if page.Records == nil {
		page.Records = []AuditRecord{}
	}
	return page, nil
}

// likeEscaper makes text match itself in a LIKE pattern.
var likeEscaper = strings.NewReplacer(`\`, `\\`, `%`, `\%`, `_`, `\_`)
