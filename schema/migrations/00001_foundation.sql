-- +goose Up

-- A workspace owns models, archives and API keys. Nothing crosses a workspace boundary.
CREATE TABLE workspaces (
    id          text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{8}$'),
    name        text NOT NULL UNIQUE CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    created_at  timestamptz NOT NULL DEFAULT now()
);

-- Keys are shown once; only the SHA-256 of the secret part is kept.
CREATE TABLE api_keys (
    id            text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{12}$'),
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name          text NOT NULL DEFAULT '',
    secret_sha256 bytea NOT NULL CHECK (octet_length(secret_sha256) = 32),
    is_admin      boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    last_used_at  timestamptz,
    revoked_at    timestamptz
);
CREATE INDEX api_keys_workspace ON api_keys (workspace_id);

CREATE TABLE models (
    id                  text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{8}$'),
    workspace_id        text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    name                text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,255}$'),
    instance_type_name  text NOT NULL DEFAULT '',
    -- Published deployments are named deployment-N; N comes from here and never goes back.
    deployment_counter  integer NOT NULL DEFAULT 0 CHECK (deployment_counter >= 0),
    created_at          timestamptz NOT NULL DEFAULT now(),
    UNIQUE (id, workspace_id)
);
CREATE INDEX models_workspace ON models (workspace_id, created_at);

-- Archives are content addressed; the blob lives in the blob store under its digest.
CREATE TABLE archives (
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    id            text NOT NULL CHECK (id ~ '^sha256:[0-9a-f]{64}$'),
    size_bytes    bigint NOT NULL CHECK (size_bytes >= 0),
    config        jsonb NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (workspace_id, id)
);

CREATE TABLE deployments (
    id                    text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{8}$'),
    model_id              text NOT NULL,
    workspace_id          text NOT NULL,
    name                  text NOT NULL CHECK (name ~ '^[A-Za-z0-9._-]{1,255}$'),
    is_development        boolean NOT NULL DEFAULT false,
    archive_id            text,
    config                jsonb NOT NULL DEFAULT '{}',
    status                text NOT NULL DEFAULT 'BUILDING' CHECK (status IN (
                              'BUILDING', 'DEPLOYING', 'DEPLOY_FAILED', 'LOADING_MODEL', 'ACTIVE',
                              'UNHEALTHY', 'BUILD_FAILED', 'BUILD_STOPPED', 'DEACTIVATING', 'INACTIVE',
                              'FAILED', 'UPDATING', 'SCALED_TO_ZERO', 'WAKING_UP')),
    status_reason         text NOT NULL DEFAULT '',
    autoscaling_settings  jsonb NOT NULL DEFAULT '{}',
    labels                jsonb NOT NULL DEFAULT '{}',
    instance_type_name    text NOT NULL DEFAULT '',
    created_at            timestamptz NOT NULL DEFAULT now(),
    updated_at            timestamptz NOT NULL DEFAULT now(),
    -- Deleted deployments stay as tombstones so that requests to them can say why they fail.
    deleted_at            timestamptz,
    FOREIGN KEY (model_id, workspace_id) REFERENCES models (id, workspace_id) ON DELETE CASCADE,
    FOREIGN KEY (workspace_id, archive_id) REFERENCES archives (workspace_id, id),
    CHECK (NOT is_development OR name = 'development')
);
CREATE UNIQUE INDEX deployments_name_per_model ON deployments (model_id, name) WHERE deleted_at IS NULL;
CREATE UNIQUE INDEX deployments_one_development ON deployments (model_id) WHERE is_development AND deleted_at IS NULL;
CREATE INDEX deployments_model ON deployments (model_id, created_at);

CREATE TABLE environments (
    model_id                 text NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    name                     text NOT NULL CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    current_deployment_id    text REFERENCES deployments (id),
    candidate_deployment_id  text REFERENCES deployments (id),
    autoscaling_settings     jsonb NOT NULL DEFAULT '{}',
    promotion_settings       jsonb NOT NULL DEFAULT '{}',
    created_at               timestamptz NOT NULL DEFAULT now(),
    updated_at               timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (model_id, name)
);

-- Every model has exactly one production environment: the primary key allows at most one,
-- these triggers make sure there is always one. The model insert is checked at commit, so the
-- model and its production environment can be written in one transaction.
-- +goose StatementBegin
CREATE FUNCTION models_require_production() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF EXISTS (SELECT 1 FROM models WHERE id = NEW.id)
       AND NOT EXISTS (SELECT 1 FROM environments WHERE model_id = NEW.id AND name = 'production') THEN
        RAISE EXCEPTION 'model % has no production environment', NEW.id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'models_require_production';
    END IF;
    RETURN NULL;
END $$;
-- +goose StatementEnd
CREATE CONSTRAINT TRIGGER models_require_production AFTER INSERT ON models
    DEFERRABLE INITIALLY DEFERRED FOR EACH ROW EXECUTE FUNCTION models_require_production();

-- +goose StatementBegin
CREATE FUNCTION environments_keep_production() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF OLD.name = 'production' AND (TG_OP = 'UPDATE' OR EXISTS (SELECT 1 FROM models WHERE id = OLD.model_id)) THEN
        RAISE EXCEPTION 'the production environment of model % cannot be removed or renamed', OLD.model_id
            USING ERRCODE = 'check_violation', CONSTRAINT = 'environments_keep_production';
    END IF;
    IF TG_OP = 'UPDATE' THEN
        RETURN NEW;
    END IF;
    RETURN OLD;
END $$;
-- +goose StatementEnd
CREATE TRIGGER environments_keep_production BEFORE DELETE ON environments
    FOR EACH ROW EXECUTE FUNCTION environments_keep_production();
CREATE TRIGGER environments_keep_production_name BEFORE UPDATE OF name, model_id ON environments
    FOR EACH ROW WHEN (OLD.name = 'production' AND (NEW.name IS DISTINCT FROM OLD.name OR NEW.model_id IS DISTINCT FROM OLD.model_id))
    EXECUTE FUNCTION environments_keep_production();

CREATE TABLE promotions (
    id                              text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{8}$'),
    model_id                        text NOT NULL,
    environment                     text NOT NULL,
    source_deployment_id            text NOT NULL REFERENCES deployments (id),
    candidate_deployment_id         text REFERENCES deployments (id),
    previous_deployment_id          text REFERENCES deployments (id),
    status                          text NOT NULL CHECK (status IN (
                                        'RELEASING', 'RAMPING_UP', 'RAMPING_DOWN', 'PAUSED',
                                        'SUCCEEDED', 'FAILED', 'CANCELED')),
    percent_traffic_to_new_version  integer NOT NULL DEFAULT 0 CHECK (percent_traffic_to_new_version BETWEEN 0 AND 100),
    error_message                   text NOT NULL DEFAULT '',
    settings                        jsonb NOT NULL DEFAULT '{}',
    workflow_id                     text NOT NULL,
    created_at                      timestamptz NOT NULL DEFAULT now(),
    updated_at                      timestamptz NOT NULL DEFAULT now(),
    finished_at                     timestamptz,
    FOREIGN KEY (model_id, environment) REFERENCES environments (model_id, name) ON DELETE CASCADE
);
-- One promotion in flight per environment, whatever the workflows do.
CREATE UNIQUE INDEX promotions_one_running ON promotions (model_id, environment)
    WHERE status IN ('RELEASING', 'RAMPING_UP', 'RAMPING_DOWN', 'PAUSED');

CREATE TABLE nodes (
    id                 text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{8}$'),
    name               text NOT NULL UNIQUE,
    agent_url          text NOT NULL,
    token_sha256       bytea NOT NULL CHECK (octet_length(token_sha256) = 32),
    state              text NOT NULL DEFAULT 'READY' CHECK (state IN ('READY', 'DRAINING', 'DOWN')),
    labels             jsonb NOT NULL DEFAULT '{}',
    last_heartbeat_at  timestamptz,
    created_at         timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE replicas (
    id             text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{12}$'),
    deployment_id  text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    node_id        text REFERENCES nodes (id),
    state          text NOT NULL DEFAULT 'PENDING' CHECK (state IN (
                       'PENDING', 'STARTING', 'READY', 'DRAINING', 'STOPPING', 'STOPPED', 'FAILED')),
    address        text NOT NULL DEFAULT '',
    error          text NOT NULL DEFAULT '',
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    ready_at       timestamptz,
    stopped_at     timestamptz
);
CREATE INDEX replicas_live ON replicas (deployment_id) WHERE state NOT IN ('STOPPED', 'FAILED');
CREATE INDEX replicas_node ON replicas (node_id) WHERE state NOT IN ('STOPPED', 'FAILED');

-- A whole GPU or a MIG instance (parent_uuid set). The assignment lives on the GPU row, so one
-- GPU can never be given to two replicas at once.
CREATE TABLE gpus (
    uuid                 text PRIMARY KEY,
    node_id              text NOT NULL REFERENCES nodes (id) ON DELETE CASCADE,
    parent_uuid          text REFERENCES gpus (uuid) ON DELETE CASCADE,
    idx                  integer NOT NULL CHECK (idx >= 0),
    name                 text NOT NULL DEFAULT '',
    architecture         text NOT NULL DEFAULT '',
    compute_capability   text NOT NULL DEFAULT '',
    pci_bus_id           text NOT NULL DEFAULT '',
    memory_total_bytes   bigint NOT NULL DEFAULT 0 CHECK (memory_total_bytes >= 0),
    memory_used_bytes    bigint NOT NULL DEFAULT 0 CHECK (memory_used_bytes >= 0),
    mig_mode             boolean NOT NULL DEFAULT false,
    mig_profile          text NOT NULL DEFAULT '',
    healthy              boolean NOT NULL DEFAULT true,
    unhealthy_reason     text NOT NULL DEFAULT '',
    assigned_replica_id  text UNIQUE REFERENCES replicas (id) ON DELETE SET NULL,
    updated_at           timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX gpus_index_per_node ON gpus (node_id, idx) WHERE parent_uuid IS NULL;

CREATE TABLE async_requests (
    id                         text PRIMARY KEY CHECK (id ~ '^[a-z0-9]{16}$'),
    workspace_id               text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    model_id                   text NOT NULL REFERENCES models (id) ON DELETE CASCADE,
    deployment_id              text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    environment                text NOT NULL DEFAULT '',
    status                     text NOT NULL DEFAULT 'QUEUED' CHECK (status IN (
                                   'QUEUED', 'IN_PROGRESS', 'SUCCEEDED', 'FAILED', 'EXPIRED',
                                   'CANCELED', 'WEBHOOK_FAILED')),
    webhook_status             text NOT NULL DEFAULT 'NO_WEBHOOK_PROVIDED' CHECK (webhook_status IN (
                                   'PENDING', 'SUCCEEDED', 'FAILED', 'CANCELED', 'NO_WEBHOOK_PROVIDED')),
    webhook_endpoint           text NOT NULL DEFAULT '',
    priority                   smallint NOT NULL DEFAULT 1 CHECK (priority BETWEEN 0 AND 2),
    max_time_in_queue_seconds  integer NOT NULL DEFAULT 600 CHECK (max_time_in_queue_seconds BETWEEN 10 AND 259200),
    retry_config               jsonb NOT NULL DEFAULT '{}',
    model_input                bytea NOT NULL,
    output                     bytea,
    errors                     jsonb NOT NULL DEFAULT '[]',
    attempts                   integer NOT NULL DEFAULT 0 CHECK (attempts >= 0),
    created_at                 timestamptz NOT NULL DEFAULT now(),
    status_at                  timestamptz NOT NULL DEFAULT now(),
    output_expires_at          timestamptz
);
CREATE INDEX async_requests_queue ON async_requests (deployment_id, priority, created_at) WHERE status = 'QUEUED';
CREATE INDEX async_requests_workspace_open ON async_requests (workspace_id) WHERE status IN ('QUEUED', 'IN_PROGRESS');

-- The audit log outlives what it describes, so it keeps IDs rather than foreign keys to them.
CREATE TABLE audit_events (
    id            bigserial PRIMARY KEY,
    workspace_id  text NOT NULL REFERENCES workspaces (id) ON DELETE CASCADE,
    model_id      text NOT NULL DEFAULT '',
    actor         text NOT NULL,
    action        text NOT NULL,
    target        text NOT NULL DEFAULT '',
    details       jsonb NOT NULL DEFAULT '{}',
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX audit_events_model ON audit_events (workspace_id, model_id, created_at);

-- Average concurrency per deployment per second, one row per gateway and second.
CREATE TABLE load_samples (
    deployment_id  text NOT NULL REFERENCES deployments (id) ON DELETE CASCADE,
    gateway_id     text NOT NULL,
    at             timestamptz NOT NULL,
    concurrency    double precision NOT NULL CHECK (concurrency >= 0),
    requests       integer NOT NULL DEFAULT 0 CHECK (requests >= 0),
    PRIMARY KEY (deployment_id, at, gateway_id)
);
CREATE INDEX load_samples_at ON load_samples (at);

-- +goose Down
DROP TABLE load_samples, audit_events, async_requests, gpus, replicas, nodes, promotions,
    environments, deployments, archives, models, api_keys, workspaces;
DROP FUNCTION environments_keep_production(), models_require_production();
