-- +goose Up

-- What agents report. A GPU's assignment is the agent's own record and may name a replica
-- the control plane has not written yet (or no longer has), so it is not a foreign key; and a
-- replica with several GPUs is assigned to each of them, so it is not unique either. A GPU
-- row still names at most one replica, which is what keeps a GPU from being shared.
ALTER TABLE gpus DROP CONSTRAINT gpus_assigned_replica_id_fkey;
ALTER TABLE gpus DROP CONSTRAINT gpus_assigned_replica_id_key;
CREATE INDEX gpus_assigned_replica ON gpus (assigned_replica_id) WHERE assigned_replica_id IS NOT NULL;
ALTER TABLE gpus
    ADD COLUMN utilization_percent integer NOT NULL DEFAULT 0 CHECK (utilization_percent BETWEEN 0 AND 100),
    ADD COLUMN temperature_c integer NOT NULL DEFAULT 0;
ALTER TABLE nodes
    ADD COLUMN agent_id text NOT NULL DEFAULT '',
    ADD COLUMN gpu_profile text NOT NULL DEFAULT '',
    ADD COLUMN reported_replicas jsonb NOT NULL DEFAULT '[]';

-- +goose Down
ALTER TABLE nodes DROP COLUMN reported_replicas, DROP COLUMN gpu_profile, DROP COLUMN agent_id;
ALTER TABLE gpus DROP COLUMN temperature_c, DROP COLUMN utilization_percent;
DROP INDEX gpus_assigned_replica;
ALTER TABLE gpus ADD CONSTRAINT gpus_assigned_replica_id_key UNIQUE (assigned_replica_id);
ALTER TABLE gpus ADD CONSTRAINT gpus_assigned_replica_id_fkey
    FOREIGN KEY (assigned_replica_id) REFERENCES replicas (id) ON DELETE SET NULL;
