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
// with POST /v1/archives.
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
	Source DeploymentArchiveSource `json:"source"`
	// Development creates the model's development deployment, or replaces the one there is.
	Development bool `json:"development"`
	// Environment, when set, promotes the deployment to that environment once it is ACTIVE.
	Environment string `json:"environment,omitempty"`
}

// DeploymentArchiveSource is ModelSource without the model's name, which a new deployment
// of an existing model does not take.
type DeploymentArchiveSource struct {
	Kind       string           `json:"kind"` // SourceKindModelArchive
	ArchiveID  string           `json:"archive_id"`
	Deployment DeploymentSource `json:"deployment"`
}

// CreatedV1 answers both create routes: the model and the deployment just made.
type CreatedV1 struct {
	Model      ModelV1      `json:"model"`
	Deployment DeploymentV1 `json:"deployment"`
}

// DeletedModelV1 answers DELETE /v1/models/{model_id}.
type DeletedModelV1 struct {
	ID      string `json:"id"`
	Deleted bool   `json:"deleted"`
}
