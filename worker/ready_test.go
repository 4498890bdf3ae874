package worker

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"

	"go.temporal.io/sdk/client"

	"github.com/modelplane/modelplane/apiv1"
)

type fakePinger struct{ err error }

func (p fakePinger) PingContext(context.Context) error { return p.err }

type fakeTemporal struct{ err error }

func (t fakeTemporal) CheckHealth(context.Context, *client.CheckHealthRequest) (*client.CheckHealthResponse, error) {
	return &client.CheckHealthResponse{}, t.err
}

func TestReadyz_ReadyOnlyWhenPostgresAndTemporalAnswer(t *testing.T) {
	down := errors.New("connection refused")
	for _, tc := range []struct {
		name     string
		db, temp error
		code     int
		checks   map[string]string
	}{
		{"both answer", nil, nil, http.StatusOK, map[string]string{"postgres": "ok", "temporal": "ok"}},
		{"postgres down", down, nil, http.StatusServiceUnavailable, map[string]string{"postgres": down.Error(), "temporal": "ok"}},
		{"temporal down", nil, down, http.StatusServiceUnavailable, map[string]string{"postgres": "ok", "temporal": down.Error()}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := httptest.NewRecorder()
			Readyz(fakePinger{tc.db}, fakeTemporal{tc.temp}).ServeHTTP(rec, httptest.NewRequest("GET", "/readyz", nil))
			if rec.Code != tc.code {
				t.Fatalf("status: want %d, got %d (%s)", tc.code, rec.Code, rec.Body)
			}
			var got apiv1.HealthV1
			if err := json.Unmarshal(rec.Body.Bytes(), &got); err != nil {
				t.Fatalf("body %q: %v", rec.Body, err)
			}
			for k, v := range tc.checks {
				if got.Checks[k] != v {
					t.Errorf("checks[%s]: want %q, got %q", k, v, got.Checks[k])
				}
			}
		})
	}
}
