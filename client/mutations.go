package client

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/settings"
)

// CreateModel creates a model with its first deployment from an uploaded archive. The body
// goes in Baseten's shape: an empty Source.Kind is sent as apiv1.SourceKindModelArchive,
// ArchiveID as s3_key, and modelplane's earlier spellings (Development, Environment,
// Source.Deployment.Name) as is_development, environment_name and deployment_name.
func (c *Client) CreateModel(ctx context.Context, req apiv1.CreateModelRequest) (apiv1.ModelV1, apiv1.DeploymentV1, error) {
	if req.Source.Kind == "" {
		req.Source.Kind = apiv1.SourceKindModelArchive
	}
	req.Source.S3Key, req.Source.ArchiveID = specKey(req.Source.S3Key, req.Source.ArchiveID)
	specPayload(&req.Source.Deployment, &req.Development, &req.Environment)
	var out apiv1.CreatedV1
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "models")
	return out.Model, out.Deployment, err
}

// CreateDeployment adds a deployment to a model from an uploaded archive (or replaces its
// development deployment when the payload's IsDevelopment is set), sent in Baseten's shape
// as CreateModel says.
func (c *Client) CreateDeployment(ctx context.Context, modelID string, req apiv1.CreateDeploymentRequest) (apiv1.ModelV1, apiv1.DeploymentV1, error) {
	if req.Source.Kind == "" {
		req.Source.Kind = apiv1.SourceKindModelArchive
	}
	req.Source.S3Key, req.Source.ArchiveID = specKey(req.Source.S3Key, req.Source.ArchiveID)
	specPayload(&req.Source.Deployment, &req.Development, &req.Environment)
	var out apiv1.CreatedV1
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "models", modelID, "deployments")
	return out.Model, out.Deployment, err
}

// specKey names the archive by s3_key alone, which takes an archive ID as well.
func specKey(s3Key, archiveID string) (string, string) {
	if s3Key == "" {
		return archiveID, ""
	}
	return s3Key, archiveID
}

// specPayload moves modelplane's earlier spellings into the payload's fields. A field set in
// both ways is left as it is, for the API to judge.
func specPayload(p *apiv1.DeploymentArchivePayload, development *bool, environment *string) {
	if *development && !p.IsDevelopment {
		p.IsDevelopment, *development = true, false
	}
	if *environment != "" && p.EnvironmentName == "" {
		p.EnvironmentName, *environment = *environment, ""
	}
	if p.Name != "" && p.DeploymentName == "" {
		p.DeploymentName, p.Name = p.Name, ""
	}
}

// PackagePayload is the deployment payload of a push of the package whose config.yaml is
// cfg: the config as JSON and its text, as Baseten's clients send them.
func PackagePayload(cfg modelpkg.Config) (apiv1.DeploymentArchivePayload, error) {
	b, err := cfg.JSON()
	if err != nil {
		return apiv1.DeploymentArchivePayload{}, err
	}
	var obj map[string]any
	if err := json.Unmarshal(b, &obj); err != nil {
		return apiv1.DeploymentArchivePayload{}, err
	}
	raw := cfg.Raw
	return apiv1.DeploymentArchivePayload{Config: obj, RawConfig: &raw}, nil
}

// PrepareModelUpload checks the payload a push will send and answers where to upload its
// archive (UploadPrepared); a dry run only checks.
func (c *Client) PrepareModelUpload(ctx context.Context, req apiv1.PrepareModelUploadRequest) (apiv1.PrepareModelUploadV1, error) {
	var out apiv1.PrepareModelUploadV1
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "prepare_model_upload")
	return out, err
}

// UploadPrepared uploads a model package (a tar.gz) to the key PrepareModelUpload answered,
// streamed from r; the key then names the archive as a source's S3Key. The upload goes to
// this client's API whatever host the answer's upload_url names, so the API key goes nowhere
// else.
func (c *Client) UploadPrepared(ctx context.Context, key string, r io.Reader) (apiv1.ArchiveV1, error) {
	p, err := path("v1", "uploads", key)
	if err != nil {
		return apiv1.ArchiveV1{}, err
	}
	var out apiv1.ArchiveV1
	err = c.do(ctx, http.MethodPut, p, r, "application/gzip", &out)
	return out, err
}

// ActivateDeployment starts a deactivated deployment; ref is an ID, "development" or
// "production".
func (c *Client) ActivateDeployment(ctx context.Context, modelID, ref string) error {
	var out apiv1.SuccessV1
	return c.send(ctx, http.MethodPost, nil, &out, "v1", "models", modelID, "deployments", ref, "activate")
}

// DeactivateDeployment stops a deployment's replicas and keeps the deployment.
func (c *Client) DeactivateDeployment(ctx context.Context, modelID, ref string) error {
	var out apiv1.SuccessV1
	return c.send(ctx, http.MethodPost, nil, &out, "v1", "models", modelID, "deployments", ref, "deactivate")
}

// DeleteDeployment deletes one deployment. The API refuses (422) the one serving production.
func (c *Client) DeleteDeployment(ctx context.Context, modelID, ref string) error {
	var out apiv1.DeletedDeploymentV1
	return c.send(ctx, http.MethodDelete, nil, &out, "v1", "models", modelID, "deployments", ref)
}

// DeleteModel deletes a model with all its deployments and environments.
func (c *Client) DeleteModel(ctx context.Context, modelID string) error {
	var out apiv1.DeletedModelV1
	return c.send(ctx, http.MethodDelete, nil, &out, "v1", "models", modelID)
}

// PromoteDeployment promotes a deployment to production and returns it. With
// scaleDownPrevious the deployment that served production before is scaled down.
func (c *Client) PromoteDeployment(ctx context.Context, modelID, ref string, scaleDownPrevious bool) (apiv1.DeploymentV1, error) {
	body := apiv1.PromoteDeploymentRequest{ScaleDownPreviousProduction: scaleDownPrevious}
	var out apiv1.DeploymentV1
	err := c.send(ctx, http.MethodPost, body, &out, "v1", "models", modelID, "deployments", ref, "promote")
	return out, err
}

// PromoteToEnvironment starts promoting a deployment into an environment and returns the
// candidate. The API answers 409 while another promotion of that environment runs.
func (c *Client) PromoteToEnvironment(ctx context.Context, modelID, env, deploymentID string, scaleDownPrevious bool) (apiv1.DeploymentV1, error) {
	body := apiv1.PromoteRequest{DeploymentID: deploymentID, ScaleDownPreviousDeployment: scaleDownPrevious}
	var out apiv1.DeploymentV1
	err := c.send(ctx, http.MethodPost, body, &out, "v1", "models", modelID, "environments", env, "promote")
	return out, err
}

// CreateEnvironment adds a custom environment to a model and returns it.
func (c *Client) CreateEnvironment(ctx context.Context, modelID string, req apiv1.CreateEnvironmentRequest) (apiv1.EnvironmentV1, error) {
	var out apiv1.EnvironmentV1
	err := c.send(ctx, http.MethodPost, req, &out, "v1", "models", modelID, "environments")
	return out, err
}

// UpdateEnvironment changes an environment's settings; fields left nil keep their values.
// The answer holds the environment after the update and whether anything changed
// (Status UNCHANGED when not).
func (c *Client) UpdateEnvironment(ctx context.Context, modelID, env string, req apiv1.UpdateEnvironmentRequest) (apiv1.UpdateEnvironmentV1, error) {
	var out apiv1.UpdateEnvironmentV1
	err := c.send(ctx, http.MethodPatch, req, &out, "v1", "models", modelID, "environments", env)
	return out, err
}

// RetryDeployment tries a failed deployment again. A deployment that has not failed answers
// Retried false with the reason.
func (c *Client) RetryDeployment(ctx context.Context, modelID, ref string) (apiv1.RetryDeploymentV1, error) {
	var out apiv1.RetryDeploymentV1
	err := c.send(ctx, http.MethodPost, nil, &out, "v1", "models", modelID, "deployments", ref, "retry")
	return out, err
}

// BuildLogs answers a deployment's status and the output of its build.
func (c *Client) BuildLogs(ctx context.Context, modelID, ref string) (apiv1.BuildLogsV1, error) {
	var out apiv1.BuildLogsV1
	return out, c.get(ctx, &out, "v1", "models", modelID, "deployments", ref, "build_logs")
}

// TerminateReplica stops one replica of a deployment; the deployment starts another.
func (c *Client) TerminateReplica(ctx context.Context, modelID, ref, replicaID string) error {
	var out apiv1.TerminateReplicaV1
	return c.send(ctx, http.MethodDelete, nil, &out, "v1", "models", modelID, "deployments", ref, "replicas", replicaID)
}

// SetRequestBackpressure sets a deployment's request backpressure policy; nil clears it.
func (c *Client) SetRequestBackpressure(ctx context.Context, modelID, ref string, policy *settings.BackpressurePolicy) (settings.RequestBackpressureSettings, error) {
	var out settings.RequestBackpressureSettings
	err := c.send(ctx, http.MethodPatch, apiv1.UpdateRequestBackpressureSettingsRequest{Policy: policy}, &out,
		"v1", "models", modelID, "deployments", ref, "request_backpressure_settings")
	return out, err
}

// DeploymentConfig returns a deployment's config.yaml text and its parsed form.
func (c *Client) DeploymentConfig(ctx context.Context, modelID, ref string) (apiv1.DeploymentConfigV1, error) {
	var out apiv1.DeploymentConfigV1
	return out, c.get(ctx, &out, "v1", "models", modelID, "deployments", ref, "config")
}

// DeploymentDownloadURL returns a URL that serves the deployment's model package (tar.gz)
// without an API key for an hour.
func (c *Client) DeploymentDownloadURL(ctx context.Context, modelID, ref string) (string, error) {
	var out apiv1.DownloadDeploymentV1
	err := c.get(ctx, &out, "v1", "models", modelID, "deployments", ref, "download")
	return out.DownloadURL, err
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
