package gateway

import (
	"context"
	"time"

	"github.com/jmoiron/sqlx"
)

// RoutesTo returns the deployment the environment sends most of its traffic to in the
// current table, "" when none.
func (g *Gateway) RoutesTo(modelID, env string) string {
	t := g.table.Load()
	if t == nil || t.models[modelID] == nil || t.models[modelID].envs[env] == nil {
		return ""
	}
	best, id := -1, ""
	for _, tg := range t.models[modelID].envs[env].targets {
		if tg.weight > best {
			best, id = tg.weight, tg.dep.id
		}
	}
	return id
}

// Weight returns the percentage of the environment's traffic that goes to the deployment.
func (g *Gateway) Weight(modelID, env, deploymentID string) int {
	t := g.table.Load()
	if t == nil || t.models[modelID] == nil || t.models[modelID].envs[env] == nil {
		return 0
	}
	for _, tg := range t.models[modelID].envs[env].targets {
		if tg.dep.id == deploymentID {
			return tg.weight
		}
	}
	return 0
}

// Routable returns the addresses of the deployment's replicas that take new requests.
func (g *Gateway) Routable(modelID, deploymentID string) []string {
	t := g.table.Load()
	if t == nil || t.models[modelID] == nil || t.models[modelID].deployments[deploymentID] == nil {
		return nil
	}
	var out []string
	for _, r := range t.models[modelID].deployments[deploymentID].replicas {
		if !r.draining.Load() {
			out = append(out, r.address)
		}
	}
	return out
}

// ReconcileAttempts runs the check for attempts recorded as running here that this gateway
// does not run, now rather than at its next period.
func (g *Gateway) ReconcileAttempts(ctx context.Context) { g.reconcileAttempts(ctx) }

// Backpressure returns the deployment's backpressure policy and concurrency target as the
// current table has them.
func (g *Gateway) Backpressure(modelID, deploymentID string) (string, int) {
	t := g.table.Load()
	if t == nil || t.models[modelID] == nil || t.models[modelID].deployments[deploymentID] == nil {
		return "", 0
	}
	d := t.models[modelID].deployments[deploymentID]
	return string(d.backpressure), d.concurrencyTarget
}

// Queued returns how many requests wait for room on the deployment.
func (g *Gateway) Queued(deploymentID string) int {
	_, loads := g.builder.snapshot()
	l := loads[deploymentID]
	if l == nil {
		return 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.queued
}

// KeyCache is the gateway's API-key cache, for tests that drive it directly.
type KeyCache = keyCache

// NewKeyCache makes a cache of size keys on db, reading the time from now.
func NewKeyCache(db *sqlx.DB, size int, now func() time.Time) *KeyCache {
	return newKeyCache(db, size, now)
}

// Authenticate returns the key's workspace or the reason it is refused.
func (k *keyCache) Authenticate(ctx context.Context, header string) (workspaceID, refused string, err error) {
	return k.authenticate(ctx, header)
}

// Notified handles a routes notification.
func (k *keyCache) Notified(payload string) { k.notified(payload) }

// Len returns how many found and unknown keys the cache holds.
func (k *keyCache) Len() (found, missing int) { return k.len() }

// Lookups returns how many times the cache read a key from the database.
func (k *keyCache) Lookups() int64 { return k.lookups.Load() }

// ShadowOf returns the deployment the environment copies requests to in the current table
// and when its settings changed, "" when none.
func (g *Gateway) ShadowOf(modelID, env string) (string, time.Time) {
	t := g.table.Load()
	if t == nil || t.models[modelID] == nil || t.models[modelID].envs[env] == nil {
		return "", time.Time{}
	}
	s := t.models[modelID].envs[env].shadow
	if s == nil {
		return "", time.Time{}
	}
	return s.dep.id, s.stats.changedAt
}

// JSONEqual is the shadow comparison of two answers' bodies.
func JSONEqual(a, b []byte, tolerance float64) bool { return jsonEqual(a, b, tolerance) }
