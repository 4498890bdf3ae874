package worker

import (
	"context"
	"encoding/json"
	"net/http"
	"time"

	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/apiv1"
)

// Pinger is the part of a database handle Readyz asks (*sqlx.DB and *sql.DB are ones).
type Pinger interface {
	PingContext(ctx context.Context) error
}

// TemporalHealth is the part of a Temporal client Readyz asks.
type TemporalHealth interface {
	CheckHealth(ctx context.Context, request *client.CheckHealthRequest) (*client.CheckHealthResponse, error)
}

// Readyz answers the worker's /readyz as the API answers its own: 200 when PostgreSQL and
// Temporal both answer within 2 seconds, else 503, with what each said. Orchestrators probe
// it to keep a worker that cannot reach either out of rotation.
func Readyz(db Pinger, tc TemporalHealth) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
		defer cancel()
		checks := map[string]string{"postgres": "ok", "temporal": "ok"}
		ready := true
		if err := db.PingContext(ctx); err != nil {
			checks["postgres"], ready = err.Error(), false
		}
		if _, err := tc.CheckHealth(ctx, &client.CheckHealthRequest{}); err != nil {
			checks["temporal"], ready = err.Error(), false
		}
		status, code := "ready", http.StatusOK
		if !ready {
			status, code = "not ready", http.StatusServiceUnavailable
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(apiv1.HealthV1{Status: status, Checks: checks})
	})
}
