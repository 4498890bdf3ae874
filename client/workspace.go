package client

import (
	"context"
	"net/http"
	"net/url"

	"github.com/modelplane/modelplane/apiv1"
)

// InstanceTypes lists the GPU shapes the cluster's nodes can place, with how many replicas
// of each fit now.
func (c *Client) InstanceTypes(ctx context.Context) ([]apiv1.InstanceTypeCapacityV1, error) {
	var out apiv1.InstanceTypesV1
	if err := c.get(ctx, &out, "v1", "instance_types"); err != nil {
		return nil, err
	}
	return nonNil(out.InstanceTypes), nil
}

// APIKeys lists the workspace's keys, without their secrets; it needs an admin key.
func (c *Client) APIKeys(ctx context.Context) ([]apiv1.APIKeyInfoV1, error) {
	var out apiv1.APIKeysV1
	if err := c.get(ctx, &out, "v1", "api_keys"); err != nil {
		return nil, err
	}
	return nonNil(out.Keys), nil
}

// CreateAPIKey makes a key and returns its text, which is shown this once; it needs an
// admin key.
func (c *Client) CreateAPIKey(ctx context.Context, req apiv1.CreateAPIKeyRequest) (string, error) {
	var out apiv1.APIKeyV1
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "api_keys")
	return out.APIKey, err
}

// DeleteAPIKey revokes a key by its prefix (its ID); it needs an admin key.
func (c *Client) DeleteAPIKey(ctx context.Context, prefix string) error {
	var out apiv1.APIKeyTombstoneV1
	return c.send(ctx, http.MethodDelete, nil, &out, "v1", "api_keys", prefix)
}

// AuditLogs reads one page of the workspace's audit log. query holds the route's parameters
// (limit, cursor, direction, event_type_groups, ...); nil reads the newest page.
func (c *Client) AuditLogs(ctx context.Context, query url.Values) (apiv1.AuditLogsV1, error) {
	var out apiv1.AuditLogsV1
	err := c.getQuery(ctx, &out, query, "v1", "audit_logs")
	return out, err
}

// ModelAuditLogs reads one page of a model's audit log; query as for AuditLogs. Page on
// with the answer's Pagination.Cursor as the cursor parameter.
func (c *Client) ModelAuditLogs(ctx context.Context, modelID string, query url.Values) (apiv1.AuditLogsV1, error) {
	var out apiv1.AuditLogsV1
	err := c.getQuery(ctx, &out, query, "v1", "models", modelID, "audit_logs")
	return out, err
}

// DeploymentMetrics reads a deployment's metrics; query holds mode, start_epoch_millis,
// end_epoch_millis and metrics (nil: the current default set).
func (c *Client) DeploymentMetrics(ctx context.Context, modelID, ref string, query url.Values) (apiv1.ModelMetricsV1, error) {
	var out apiv1.ModelMetricsV1
	err := c.getQuery(ctx, &out, query, "v1", "models", modelID, "deployments", ref, "metrics")
	return out, err
}

// EnvironmentMetrics reads an environment's metrics, over the deployments that served it;
// query as for DeploymentMetrics.
func (c *Client) EnvironmentMetrics(ctx context.Context, modelID, env string, query url.Values) (apiv1.ModelMetricsV1, error) {
	var out apiv1.ModelMetricsV1
	err := c.getQuery(ctx, &out, query, "v1", "models", modelID, "environments", env, "metrics")
	return out, err
}

// Usage reads the workspace's usage by hour; query holds start, end and group_by (nil: the
// last 24 hours by deployment).
func (c *Client) Usage(ctx context.Context, query url.Values) (apiv1.UsageV1, error) {
	var out apiv1.UsageV1
	err := c.getQuery(ctx, &out, query, "v1", "usage")
	out.Rows = nonNil(out.Rows)
	return out, err
}

// getQuery is get with query parameters.
func (c *Client) getQuery(ctx context.Context, out any, query url.Values, segments ...string) error {
	p, err := path(segments...)
	if err != nil {
		return err
	}
	if len(query) > 0 {
		p += "?" + query.Encode()
	}
	return c.do(ctx, http.MethodGet, p, nil, "", out)
}
