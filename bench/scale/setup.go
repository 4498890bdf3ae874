package main

import (
	"context"
	"fmt"
	"net"
	"net/http"

	"github.com/jmoiron/sqlx"
	"github.com/lib/pq"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/store"
)

// fleet is one size's database and what the measurements need from it.
type fleet struct {
	db          *sqlx.DB
	url         string
	workspaceID string
	key         string
	models      []string
	// deployments are by model: the first is production's.
	deployments [][3]string
	drop        func()
}

func (f *fleet) close() {
	f.db.Close()
	f.drop()
}

// newFleet creates a database holding n models of 3 deployments each, the first deployment
// of the first active models ACTIVE with a READY replica at upstream, every other one
// SCALED_TO_ZERO.
func newFleet(ctx context.Context, n, active int, upstream string) (_ *fleet, err error) {
	u, drop, err := pgtest.Create("bench_scale")
	if err != nil {
		return nil, err
	}
	f := &fleet{url: u, drop: drop}
	defer func() {
		if err != nil {
			if f.db != nil {
				f.db.Close()
			}
			drop()
		}
	}()
	if err := pgtest.Migrate(u); err != nil {
		return nil, err
	}
	if f.db, err = store.Open(ctx, u); err != nil {
		return nil, err
	}
	ws, _, err := store.EnsureWorkspace(ctx, f.db, "bench")
	if err != nil {
		return nil, err
	}
	f.workspaceID = ws.ID
	if _, f.key, err = apikey.Create(ctx, f.db, ws.ID, "bench", false); err != nil {
		return nil, err
	}
	// Room for every queued async request and replica the benchmark makes.
	q := store.DefaultQuotas()
	q.AsyncRequests, q.Replicas = 10_000_000, 10_000
	if err := store.SetWorkspaceQuotas(ctx, f.db, ws.ID, q); err != nil {
		return nil, err
	}
	var ids, modelIDs, names, statuses, settings []string
	var repIDs, repDeps []string
	for i := range n {
		m, err := store.CreateModel(ctx, f.db, ws.ID, fmt.Sprintf("model-%05d", i))
		if err != nil {
			return nil, err
		}
		f.models = append(f.models, m.ID)
		var deps [3]string
		for k := range deps {
			deps[k] = modelplane.NewID(8)
			status, s := modelplane.DeploymentScaledToZero, `{"min_replica": 0}`
			if k == 0 && i < active {
				status, s = modelplane.DeploymentActive, `{"min_replica": 1, "max_replica": 1}`
				repIDs, repDeps = append(repIDs, modelplane.NewID(12)), append(repDeps, deps[k])
			}
			ids, modelIDs, statuses, settings = append(ids, deps[k]), append(modelIDs, m.ID), append(statuses, string(status)), append(settings, s)
			names = append(names, fmt.Sprintf("v%d", k+1))
		}
		f.deployments = append(f.deployments, deps)
	}
	return f, store.WithTx(ctx, f.db, func(tx *sqlx.Tx) error {
		if _, err := tx.ExecContext(ctx, `
			INSERT INTO deployments (id, model_id, workspace_id, name, status, autoscaling_settings, updated_at)
			SELECT d.id, d.model_id, $1, d.name, d.status, d.settings::jsonb, now() - interval '1 hour'
			FROM unnest($2::text[], $3::text[], $4::text[], $5::text[], $6::text[]) AS d(id, model_id, name, status, settings)`,
			ws.ID, pq.Array(ids), pq.Array(modelIDs), pq.Array(names), pq.Array(statuses), pq.Array(settings)); err != nil {
			return fmt.Errorf("insert deployments: %w", err)
		}
		if _, err := tx.ExecContext(ctx, `
			UPDATE environments e SET current_deployment_id = d.id
			FROM deployments d WHERE d.model_id = e.model_id AND d.name = 'v1' AND e.name = 'production'`); err != nil {
			return fmt.Errorf("point environments: %w", err)
		}
		if err := insertReady(ctx, tx, repIDs, repDeps, upstream); err != nil {
			return err
		}
		_, err := tx.ExecContext(ctx, `ANALYZE`)
		return err
	})
}

// insertReady records READY replicas of the deployments at address.
func insertReady(ctx context.Context, db sqlx.ExecerContext, ids, deployments []string, address string) error {
	_, err := db.ExecContext(ctx, `
		INSERT INTO replicas (id, deployment_id, state, address, ready_at, created_at)
		SELECT r.id, r.deployment_id, 'READY', $3, now() - interval '1 hour', now() - interval '1 hour'
		FROM unnest($1::text[], $2::text[]) AS r(id, deployment_id)`,
		pq.Array(ids), pq.Array(deployments), address)
	if err != nil {
		return fmt.Errorf("insert replicas: %w", err)
	}
	return nil
}

// modelServer is a model server that answers every request at once; it returns its address.
func modelServer() (string, func(), error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = w.Write([]byte(`{"ok":true}`))
	})}
	go func() { _ = srv.Serve(ln) }()
	return ln.Addr().String(), func() { srv.Close() }, nil
}
