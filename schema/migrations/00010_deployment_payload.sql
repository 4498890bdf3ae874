-- +goose Up

-- What a create request says of its deployment beside the package (Baseten's
-- DeploymentArchivePayloadV1). The config column, '{}' until now, holds the request's
-- `config` when it differs from the package's config.yaml: the deployment then runs it.
-- raw_config is the config.yaml text the request gave, answered by GET .../config.
-- user_env is the client's metadata (its version...), kept and never given to the model.
ALTER TABLE deployments
    ADD COLUMN raw_config text,
    ADD COLUMN user_env jsonb NOT NULL DEFAULT '{}',
    ADD COLUMN deploy_timeout_minutes integer CHECK (deploy_timeout_minutes BETWEEN 10 AND 1440),
    ADD COLUMN preserve_env_instance_type boolean NOT NULL DEFAULT true;

-- Set when the model is created and never changed: its deployments' packages cannot be
-- downloaded.
ALTER TABLE models ADD COLUMN disable_archive_download boolean NOT NULL DEFAULT false;

-- Where POST /v1/prepare_model_upload lets a workspace put an archive: the key is the
-- spec's s3_key, the archive is set once by the one PUT that uploads it. A key nobody
-- uploaded to expires; one that holds an archive goes with the archive.
CREATE TABLE archive_uploads (
    key           text PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    archive_id    text,
    expires_at    timestamptz NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    uploaded_at   timestamptz,
    FOREIGN KEY (workspace_id, archive_id) REFERENCES archives (workspace_id, id) ON DELETE CASCADE,
    CHECK ((archive_id IS NULL) = (uploaded_at IS NULL))
);
CREATE INDEX archive_uploads_expiry ON archive_uploads (expires_at) WHERE archive_id IS NULL;

-- +goose Down
DROP TABLE archive_uploads;
ALTER TABLE models DROP COLUMN disable_archive_download;
ALTER TABLE deployments
    DROP COLUMN preserve_env_instance_type,
    DROP COLUMN deploy_timeout_minutes,
    DROP COLUMN user_env,
    DROP COLUMN raw_config;
