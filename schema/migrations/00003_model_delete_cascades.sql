-- +goose Up

-- Deleting a model removes its deployments, environments and promotions in one statement.
-- PostgreSQL checks a plain foreign key as soon as the cascaded delete that touched it is
-- done, before the sibling cascades have run, so references between a model's own rows must
-- cascade (or clear) themselves. Deployments are otherwise never removed, only tombstoned.
ALTER TABLE promotions
    DROP CONSTRAINT promotions_source_deployment_id_fkey,
    DROP CONSTRAINT promotions_candidate_deployment_id_fkey,
    DROP CONSTRAINT promotions_previous_deployment_id_fkey,
    ADD CONSTRAINT promotions_source_deployment_id_fkey
        FOREIGN KEY (source_deployment_id) REFERENCES deployments (id) ON DELETE CASCADE,
    ADD CONSTRAINT promotions_candidate_deployment_id_fkey
        FOREIGN KEY (candidate_deployment_id) REFERENCES deployments (id) ON DELETE CASCADE,
    ADD CONSTRAINT promotions_previous_deployment_id_fkey
        FOREIGN KEY (previous_deployment_id) REFERENCES deployments (id) ON DELETE CASCADE;
ALTER TABLE environments
    DROP CONSTRAINT environments_current_deployment_id_fkey,
    DROP CONSTRAINT environments_candidate_deployment_id_fkey,
    ADD CONSTRAINT environments_current_deployment_id_fkey
        FOREIGN KEY (current_deployment_id) REFERENCES deployments (id) ON DELETE SET NULL,
    ADD CONSTRAINT environments_candidate_deployment_id_fkey
        FOREIGN KEY (candidate_deployment_id) REFERENCES deployments (id) ON DELETE SET NULL;

-- +goose Down
ALTER TABLE environments
    DROP CONSTRAINT environments_current_deployment_id_fkey,
    DROP CONSTRAINT environments_candidate_deployment_id_fkey,
    ADD CONSTRAINT environments_current_deployment_id_fkey FOREIGN KEY (current_deployment_id) REFERENCES deployments (id),
    ADD CONSTRAINT environments_candidate_deployment_id_fkey FOREIGN KEY (candidate_deployment_id) REFERENCES deployments (id);
ALTER TABLE promotions
    DROP CONSTRAINT promotions_source_deployment_id_fkey,
    DROP CONSTRAINT promotions_candidate_deployment_id_fkey,
    DROP CONSTRAINT promotions_previous_deployment_id_fkey,
    ADD CONSTRAINT promotions_source_deployment_id_fkey FOREIGN KEY (source_deployment_id) REFERENCES deployments (id),
    ADD CONSTRAINT promotions_candidate_deployment_id_fkey FOREIGN KEY (candidate_deployment_id) REFERENCES deployments (id),
    ADD CONSTRAINT promotions_previous_deployment_id_fkey FOREIGN KEY (previous_deployment_id) REFERENCES deployments (id);
