package apiv1

import "time"

// SecretV1 is a workspace secret's metadata (Baseten's SecretV1): never its value.
type SecretV1 struct {
	ID        string    `json:"id"`
	CreatedAt time.Time `json:"created_at"`
	Name      string    `json:"name"`
	// TeamName is the workspace's name.
	TeamName string `json:"team_name"`
}

// SecretsV1 answers GET /v1/secrets (Baseten's SecretsV1).
type SecretsV1 struct {
	Secrets []SecretV1 `json:"secrets"`
}

// UpsertSecretRequestV1 is the body of POST /v1/secrets (Baseten's UpsertSecretRequestV1).
type UpsertSecretRequestV1 struct {
	Name  string `json:"name"`
	Value string `json:"value"`
}

// SecretTombstoneV1 answers DELETE /v1/secrets/{secret_name} (Baseten's SecretTombstoneV1).
type SecretTombstoneV1 struct {
	Name string `json:"name"`
}
