package apiv1

import "time"

// AuditEventV1 is one audit log entry: who (the key's ID) did what to which target.
type AuditEventV1 struct {
	ID        int64          `json:"id"`
	CreatedAt time.Time      `json:"created_at"`
	Actor     string         `json:"actor"`
	Action    string         `json:"action"`
	Target    string         `json:"target"`
	Details   map[string]any `json:"details"`
}

// AuditLogV1 answers GET /v1/models/{model_id}/audit_logs, newest first.
type AuditLogV1 struct {
	AuditLogs []AuditEventV1 `json:"audit_logs"`
}
