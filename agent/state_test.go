package agent

import (
	"reflect"
	"testing"
	"time"

	"github.com/modelplane/modelplane"
)

// A field of the wire view that record.wire does not name stays empty in every answer; this
// catches it the day the field is added.
func TestRecordWire_NamesEveryFieldOfTheWireView(t *testing.T) {
	now, code := time.Now().UTC(), 3
	r := record{
		ID: "r1", DeploymentID: "d1", Environment: "production", State: modelplane.ReplicaFailed,
		Error: "exited", ExitCode: &code, LogTail: []string{"out of memory"}, GPUUUIDs: []string{"GPU-1"},
		Runtime: "process", Address: "127.0.0.1:9000", HealthPath: "/health", PredictPath: "/predict",
		LivenessPath: "/live", WebsocketPath: "/ws", Restarts: 2,
		CreatedAt: now, ReadyAt: &now, StoppedAt: &now, PatchHash: "hash", ReloadError: "reload failed",
	}
	w := reflect.ValueOf(r.wire(true))
	for i := range w.NumField() {
		if w.Field(i).IsZero() {
			t.Errorf("record.wire leaves agentproto.Replica.%s empty: name it there", w.Type().Field(i).Name)
		}
	}
}
