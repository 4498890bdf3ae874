package agentproto_test

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
)

func TestStartRequest_ResourcesAreTheGPURequestKeys(t *testing.T) {
	b, err := json.Marshal(agentproto.StartRequest{ReplicaID: "r1", DeploymentID: "d1",
		Resources: modelplane.GPURequest{GPUCount: 2, GPUType: "H100", GPUMemoryGiB: 80}})
	require.NoError(t, err)
	assert.JSONEq(t, `{"replica_id": "r1", "deployment_id": "d1",
		"resources": {"gpu_count": 2, "gpu_type": "H100", "gpu_memory_gib": 80}}`, string(b))

	b, err = json.Marshal(agentproto.StartRequest{ReplicaID: "r1", DeploymentID: "d1"})
	require.NoError(t, err)
	assert.JSONEq(t, `{"replica_id": "r1", "deployment_id": "d1", "resources": {"gpu_count": 0}}`, string(b),
		"a CPU-only start still sends gpu_count 0")
}
