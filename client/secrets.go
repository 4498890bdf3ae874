package client

import (
	"context"
	"net/http"

	"github.com/modelplane/modelplane/apiv1"
)

// Secrets lists the workspace's secrets: names and times, never values.
func (c *Client) Secrets(ctx context.Context) ([]apiv1.SecretV1, error) {
	var out apiv1.SecretsV1
	if err := c.get(ctx, &out, "v1", "secrets"); err != nil {
		return nil, err
	}
	return nonNil(out.Secrets), nil
}

// SetSecret creates the workspace's secret name, or replaces its value. Replicas started
// from then on get the new value.
func (c *Client) SetSecret(ctx context.Context, name, value string) (apiv1.SecretV1, error) {
	var out apiv1.SecretV1
	err := c.send(ctx, http.MethodPost, apiv1.UpsertSecretRequestV1{Name: name, Value: value}, &out, "v1", "secrets")
	return out, err
}

// DeleteSecret removes the workspace's secret name.
func (c *Client) DeleteSecret(ctx context.Context, name string) error {
	var out apiv1.SecretTombstoneV1
	return c.send(ctx, http.MethodDelete, nil, &out, "v1", "secrets", name)
}
