package client

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"

	"github.com/modelplane/modelplane/api"
)

// SourceKindModelArchive is the only kind of source the API takes: an archive uploaded
// with UploadArchive.
const SourceKindModelArchive = "model_archive"

// CreateModelRequest is the body of POST /v1/models: a new model and its first deployment.
type CreateModelRequest struct {
	Source ModelSource `json:"source"`
	// Development makes the first deployment the model's development deployment.
	Development bool `json:"development"`
	// Environment, when set, promotes the deployment to that environment once it is ACTIVE.
	Environment string `json:"environment,omitempty"`
}

// ModelSource says where a new model's code comes from and names the model.
type ModelSource struct {
	Kind       string           `json:"kind"` // SourceKindModelArchive
	Name       string           `json:"name"`
	ArchiveID  string           `json:"archive_id"`
	Deployment DeploymentSource `json:"deployment"`
}

// DeploymentSource is the deployment part of a source: an optional name (deployment-N when
// empty) and config. The deployment runs its archive's config.yaml, so Config is normally
// left out; the API refuses a non-empty override.
type DeploymentSource struct {
	Config any    `json:"config,omitempty"`
	Name   string `json:"name,omitempty"`
}

// CreateDeploymentRequest is the body of POST /v1/models/{model_id}/deployments.
type CreateDeploymentRequest struct {
	Source      DeploymentArchiveSource `json:"source"`
	Development bool                    `json:"development"`
	Environment string                  `json:"environment,omitempty"`
}

// DeploymentArchiveSource is ModelSource without the model's name, which a new deployment
// of an existing model does not take.
type DeploymentArchiveSource struct {
	Kind       string           `json:"kind"` // SourceKindModelArchive
	ArchiveID  string           `json:"archive_id"`
	Deployment DeploymentSource `json:"deployment"`
}

// created is the answer to both create routes.
type created struct {
	Model      api.ModelV1      `json:"model"`
	Deployment api.DeploymentV1 `json:"deployment"`
}

// CreateModel creates a model with its first deployment from an uploaded archive. An empty
// Source.Kind is sent as SourceKindModelArchive.
func (c *Client) CreateModel(ctx context.Context, req CreateModelRequest) (api.ModelV1, api.DeploymentV1, error) {
	if req.Source.Kind == "" {
		req.Source.Kind = SourceKindModelArchive
	}
	var out created
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "models")
	return out.Model, out.Deployment, err
}

// CreateDeployment adds a deployment to a model from an uploaded archive (or replaces its
// development deployment when req.Development is set). An empty Source.Kind is sent as
// SourceKindModelArchive.
func (c *Client) CreateDeployment(ctx context.Context, modelID string, req CreateDeploymentRequest) (api.ModelV1, api.DeploymentV1, error) {
	if req.Source.Kind == "" {
		req.Source.Kind = SourceKindModelArchive
	}
	var out created
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "models", modelID, "deployments")
	return out.Model, out.Deployment, err
}

// ActivateDeployment starts a deactivated deployment; ref is an ID, "development" or
// "production".
func (c *Client) ActivateDeployment(ctx context.Context, modelID, ref string) error {
	var out struct{}
	return c.send(ctx, http.MethodPost, nil, &out, "v1", "models", modelID, "deployments", ref, "activate")
}

// DeactivateDeployment stops a deployment's replicas and keeps the deployment.
func (c *Client) DeactivateDeployment(ctx context.Context, modelID, ref string) error {
	var out struct{}
	return c.send(ctx, http.MethodPost, nil, &out, "v1", "models", modelID, "deployments", ref, "deactivate")
}

// DeleteDeployment deletes one deployment. The API refuses (422) the one serving production.
func (c *Client) DeleteDeployment(ctx context.Context, modelID, ref string) error {
	var out struct{}
	return c.send(ctx, http.MethodDelete, nil, &out, "v1", "models", modelID, "deployments", ref)
}

// DeleteModel deletes a model with all its deployments and environments.
func (c *Client) DeleteModel(ctx context.Context, modelID string) error {
	var out struct{}
	return c.send(ctx, http.MethodDelete, nil, &out, "v1", "models", modelID)
}

// PromoteDeployment promotes a deployment to production and returns it. With
// scaleDownPrevious the deployment that served production before is scaled down.
func (c *Client) PromoteDeployment(ctx context.Context, modelID, ref string, scaleDownPrevious bool) (api.DeploymentV1, error) {
	body := struct {
		ScaleDownPreviousProduction bool `json:"scale_down_previous_production"`
	}{scaleDownPrevious}
	var out api.DeploymentV1
	err := c.send(ctx, http.MethodPost, body, &out, "v1", "models", modelID, "deployments", ref, "promote")
	return out, err
}

// PromoteToEnvironment starts promoting a deployment into an environment and returns the
// candidate. The API answers 409 while another promotion of that environment runs.
func (c *Client) PromoteToEnvironment(ctx context.Context, modelID, env, deploymentID string, scaleDownPrevious bool) (api.DeploymentV1, error) {
	body := struct {
		DeploymentID                string `json:"deployment_id"`
		ScaleDownPreviousDeployment bool   `json:"scale_down_previous_deployment"`
	}{deploymentID, scaleDownPrevious}
	var out api.DeploymentV1
	err := c.send(ctx, http.MethodPost, body, &out, "v1", "models", modelID, "environments", env, "promote")
	return out, err
}

// send encodes in as the JSON body (none when nil) of a request to the path made of
// segments and decodes the answer into out.
func (c *Client) send(ctx context.Context, method string, in, out any, segments ...string) error {
	return c.sendWith(ctx, readError, method, in, out, segments...)
}

// sendWith is send with the error of an answer that is not 2xx made by answerErr.
func (c *Client) sendWith(ctx context.Context, answerErr func(*http.Response) error, method string, in, out any, segments ...string) error {
	p, err := path(segments...)
	if err != nil {
		return err
	}
	if in == nil {
		return c.doWith(ctx, answerErr, method, p, nil, "", out)
	}
	b, err := json.Marshal(in)
	if err != nil {
		return err
	}
	return c.doWith(ctx, answerErr, method, p, bytes.NewReader(b), "application/json", out)
}
