package apiv1

import "time"

// WebhookSecretStatusV1 answers GET /v1/webhook_secret: whether the workspace has a webhook
// secret and since when, never the secret itself.
type WebhookSecretStatusV1 struct {
	Exists    bool       `json:"exists"`
	CreatedAt *time.Time `json:"created_at,omitempty"`
}

// WebhookSecretV1 answers POST /v1/webhook_secret: the new secret, shown only in this answer.
type WebhookSecretV1 struct {
	Secret    string    `json:"secret"`
	CreatedAt time.Time `json:"created_at"`
}
