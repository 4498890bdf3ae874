package apiv1

import "time"

// ModelV1 is API.md's model object.
type ModelV1 struct {
	ID                      string    `json:"id"`
	CreatedAt               time.Time `json:"created_at"`
	Name                    string    `json:"name"`
	DeploymentsCount        int       `json:"deployments_count"`
	ProductionDeploymentID  *string   `json:"production_deployment_id"`
	DevelopmentDeploymentID *string   `json:"development_deployment_id"`
	InstanceTypeName        string    `json:"instance_type_name"`
	// TeamName is the name of the model's workspace.
	TeamName string `json:"team_name"`
}

// ModelListV1 answers GET /v1/models.
type ModelListV1 struct {
	Models []ModelV1 `json:"models"`
}

// SourceKindModelArchive is the only kind of source the API takes: an archive uploaded
// with POST /v1/archives or to the upload_url of POST /v1/prepare_model_upload.
const SourceKindModelArchive = "model_archive"

// CreateModelRequest is the body of POST /v1/models (Baseten's CreateModelRequestV1): a new
// model and its first deployment.
type CreateModelRequest struct {
	Source ModelArchiveSource `json:"source"`
	// Development is modelplane's earlier spelling of Source.Deployment.IsDevelopment, still
	// accepted; the two may not disagree.
	Development bool `json:"development,omitempty"`
	// Environment is modelplane's earlier spelling of Source.Deployment.EnvironmentName,
	// still accepted; the two may not disagree.
	Environment string `json:"environment,omitempty"`
}

// ModelArchiveSource says where a new model's code comes from and names the model
// (Baseten's ModelArchiveSourceV1).
type ModelArchiveSource struct {
	Kind string `json:"kind"` // SourceKindModelArchive
	Name string `json:"name"`
	// S3Key names the uploaded archive: the s3_key POST /v1/prepare_model_upload answered,
	// or the id POST /v1/archives answered.
	S3Key string `json:"s3_key,omitempty"`
	// ArchiveID is modelplane's: the id POST /v1/archives answered. It may be sent instead
	// of S3Key, or beside it when the two name the same archive.
	ArchiveID  string                   `json:"archive_id,omitempty"`
	Deployment DeploymentArchivePayload `json:"deployment"`
	// DisableArchiveDownload keeps the packages of the model's deployments from being
	// downloaded (GET .../download answers 403). It is set when the model is created and
	// never changes.
	DisableArchiveDownload bool `json:"disable_archive_download,omitempty"`
}

// DeploymentArchivePayload is the deployment part of a source, and of a
// PrepareModelUploadRequest (Baseten's DeploymentArchivePayloadV1). Every field may be left
// out (or null); Config is what Baseten requires and its clients send.
type DeploymentArchivePayload struct {
	// Config is config.yaml as a JSON object. When it runs the model the same way as the
	// package's config.yaml it changes nothing; otherwise the deployment runs it instead.
	Config map[string]any `json:"config,omitempty"`
	// RawConfig is the config.yaml text, answered by GET .../config. One that does not
	// parse to the config the deployment runs is dropped (and logged).
	RawConfig *string `json:"raw_config,omitempty"`
	// UserEnv is the client's own metadata (its version, ...); it is kept and never reaches
	// the model.
	UserEnv map[string]any `json:"user_env,omitempty"`
	// EnvironmentName deploys straight to this environment: a promotion of the deployment
	// starts once it is ACTIVE.
	EnvironmentName string `json:"environment_name,omitempty"`
	// PreserveEnvInstanceType is kept with the deployment; nil is true.
	PreserveEnvInstanceType *bool `json:"preserve_env_instance_type,omitempty"`
	// DeployTimeoutMinutes (10-1440) bounds how long a replica may take to become ready;
	// one that is not ready in time fails the deployment. Nil: no bound.
	DeployTimeoutMinutes *int `json:"deploy_timeout_minutes,omitempty"`
	// DeploymentName names the deployment (default deployment-N).
	DeploymentName string `json:"deployment_name,omitempty"`
	// Labels are the deployment's, answered in DeploymentV1.labels.
	Labels map[string]any `json:"labels,omitempty"`
	// IsDevelopment creates the model's development deployment, or replaces the one there is.
	IsDevelopment bool `json:"is_development,omitempty"`
	// Name is modelplane's earlier spelling of DeploymentName, still accepted; the two may
	// not disagree.
	Name string `json:"name,omitempty"`
}

// CreateDeploymentRequest is the body of POST /v1/models/{model_id}/deployments (Baseten's
// CreateModelDeploymentRequestV1).
type CreateDeploymentRequest struct {
	Source DeploymentArchiveSource `json:"source"`
	// Development is modelplane's earlier spelling of Source.Deployment.IsDevelopment.
	Development bool `json:"development,omitempty"`
	// Environment is modelplane's earlier spelling of Source.Deployment.EnvironmentName.
	Environment string `json:"environment,omitempty"`
}

// DeploymentArchiveSource is ModelArchiveSource without the model's name, which a new
// deployment of an existing model does not take (Baseten's DeploymentArchiveSourceV1).
type DeploymentArchiveSource struct {
	Kind       string                   `json:"kind"` // SourceKindModelArchive
	S3Key      string                   `json:"s3_key,omitempty"`
	ArchiveID  string                   `json:"archive_id,omitempty"`
	Deployment DeploymentArchivePayload `json:"deployment"`
}

// PrepareModelUploadRequest is the body of POST /v1/prepare_model_upload (Baseten's
// PrepareModelUploadRequestV1): the payload a push will send, checked now, and a request
// for a place to upload its archive. Exactly one of Name (a new model) and ModelID (a new
// deployment of that model) is set.
type PrepareModelUploadRequest struct {
	Deployment DeploymentArchivePayload `json:"deployment"`
	Name       string                   `json:"name,omitempty"`
	// TeamID may name the workspace (its ID or name): modelplane has one team per workspace.
	TeamID  string `json:"team_id,omitempty"`
	ModelID string `json:"model_id,omitempty"`
	// DryRun checks the payload only; the answer's fields are then all null.
	DryRun bool `json:"dry_run,omitempty"`
}

// AWSCredentialsV1 is Baseten's STS credentials object. modelplane's own archive store
// needs none, so PrepareModelUploadV1.Creds is always null; the type is here for clients
// that decode the spec's shape.
type AWSCredentialsV1 struct {
	AWSAccessKeyID     string `json:"aws_access_key_id"`
	AWSSecretAccessKey string `json:"aws_secret_access_key"`
	AWSSessionToken    string `json:"aws_session_token"`
}

// PrepareModelUploadV1 answers POST /v1/prepare_model_upload (Baseten's
// PrepareModelUploadResponseV1) with where to put the archive: S3Key names it in the create
// request once it is uploaded, and UploadURL (modelplane's) is where to PUT its bytes with
// the same API key. Creds, S3Bucket and S3Region are null: the archive goes to modelplane,
// not to S3. Everything is null for a dry run.
type PrepareModelUploadV1 struct {
	Creds     *AWSCredentialsV1 `json:"creds"`
	S3Bucket  *string           `json:"s3_bucket"`
	S3Key     *string           `json:"s3_key"`
	S3Region  *string           `json:"s3_region"`
	UploadURL *string           `json:"upload_url"`
}

// CreatedV1 answers both create routes (Baseten's CreatedModelDeploymentV1): the model and
// the deployment just made.
type CreatedV1 struct {
	Model      ModelV1      `json:"model"`
	Deployment DeploymentV1 `json:"deployment"`
}

// DeletedModelV1 answers DELETE /v1/models/{model_id}.
type DeletedModelV1 struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}
