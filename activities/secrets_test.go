package activities_test

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/secretbox"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

const secretConfig = `{"model_name":"echo","secrets":["hf_token"]}`

func withSecretsKey(t *testing.T, f *fixture) *secretbox.Key {
	t.Helper()
	text, err := secretbox.Generate()
	require.NoError(t, err)
	k, err := secretbox.ParseKey(text)
	require.NoError(t, err)
	f.acts.SecretsKey = k
	return k
}

func setSecret(t *testing.T, f *fixture, k *secretbox.Key, name, value string) {
	t.Helper()
	sealed, err := k.Seal(f.dep.WorkspaceID, name, []byte(value))
	require.NoError(t, err)
	_, err = store.UpsertSecret(context.Background(), f.db, f.dep.WorkspaceID, name, sealed)
	require.NoError(t, err)
}

func TestPlaceReplica_AMissingSecretFailsBeforeAGPUIsTaken(t *testing.T) {
	f := newFixture(t, secretConfig)
	withSecretsKey(t, f)
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeMissingSecret, appErrType(err), "got %v", err)
	require.Contains(t, err.Error(), `missing secret "hf_token"`)
	live, err := store.ListLiveReplicas(context.Background(), f.db, f.dep.ID)
	require.NoError(t, err)
	require.Empty(t, live, "no replica may be placed, so no GPU held")
}

func TestPlaceReplica_SecretsWithoutAKeyFailNamingTheSetting(t *testing.T) {
	f := newFixture(t, secretConfig)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: modelplane.NewID(12)})
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeMissingSecret, appErrType(err), "got %v", err)
	require.Contains(t, err.Error(), "MODELPLANE_SECRETS_KEY")
}

func TestStartReplica_SendsTheNamedSecretsToTheAgentOnly(t *testing.T) {
	f := newFixture(t, secretConfig)
	k := withSecretsKey(t, f)
	const value = "hf-value-1f7e"
	setSecret(t, f, k, "hf_token", value)
	setSecret(t, f, k, "not_named", "other-value")

	spec := contract.DeploymentSpec{DeploymentID: f.dep.ID, ModelID: f.dep.ModelID, WorkspaceID: f.dep.WorkspaceID,
		ArchiveID: *f.dep.ArchiveID, Config: json.RawMessage(secretConfig)}
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	in := contract.StartReplicaInput{ReplicaID: id, Spec: spec}
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, in)
	require.NoError(t, err)
	require.Len(t, f.agent.starts, 1)
	require.Equal(t, map[string]string{"hf_token": value}, f.agent.starts[0].Secrets,
		"the agent gets exactly the secrets the config names")
	payload, err := json.Marshal(in)
	require.NoError(t, err)
	require.NotContains(t, string(payload), value, "the activity's input must not carry a value")

	// Deleted after the placement: the start fails, naming it, and retrying cannot help.
	_, err = store.DeleteSecret(context.Background(), f.db, f.dep.WorkspaceID, "hf_token")
	require.NoError(t, err)
	in.ReplicaID = modelplane.NewID(12)
	_, err = f.db.ExecContext(context.Background(), `UPDATE replicas SET state = 'STOPPED' WHERE id = $1`, id)
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: in.ReplicaID})
	require.Equal(t, contract.ErrTypeMissingSecret, appErrType(err), "got %v", err)
	setSecret(t, f, k, "hf_token", value)
	_, err = f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: in.ReplicaID})
	require.NoError(t, err)
	_, err = store.DeleteSecret(context.Background(), f.db, f.dep.WorkspaceID, "hf_token")
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, in)
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeMissingSecret, appErrType(err), "got %v", err)
	require.Contains(t, err.Error(), `"hf_token"`)
	require.Len(t, f.agent.starts, 1, "nothing reaches the agent without its secret")
}

func TestStartReplica_AValueSealedUnderAnotherKeyFailsWithoutShowingIt(t *testing.T) {
	f := newFixture(t, secretConfig)
	other := withSecretsKey(t, f)
	setSecret(t, f, other, "hf_token", "sealed-elsewhere")
	withSecretsKey(t, f) // the worker now has another key
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id, Spec: contract.DeploymentSpec{
		DeploymentID: f.dep.ID, WorkspaceID: f.dep.WorkspaceID, ArchiveID: *f.dep.ArchiveID, Config: json.RawMessage(secretConfig)}})
	require.Error(t, err)
	require.Equal(t, contract.ErrTypeMissingSecret, appErrType(err), "got %v", err)
	require.Contains(t, err.Error(), `secret "hf_token"`)
	require.NotContains(t, err.Error(), "sealed-elsewhere")
}

func TestStartReplica_AReplicaTheAgentHasStartedKeepsRunningWhenItsSecretIsDeleted(t *testing.T) {
	f := newFixture(t, secretConfig)
	k := withSecretsKey(t, f)
	setSecret(t, f, k, "hf_token", "v1")
	spec := contract.DeploymentSpec{DeploymentID: f.dep.ID, WorkspaceID: f.dep.WorkspaceID,
		ArchiveID: *f.dep.ArchiveID, Config: json.RawMessage(secretConfig)}
	id := modelplane.NewID(12)
	_, err := f.env.ExecuteActivity(f.acts.PlaceReplica, contract.PlaceReplicaInput{DeploymentID: f.dep.ID, ReplicaID: id})
	require.NoError(t, err)
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id, Spec: spec})
	require.NoError(t, err)
	_, err = store.DeleteSecret(context.Background(), f.db, f.dep.WorkspaceID, "hf_token")
	require.NoError(t, err)

	// A new run of the workflow starts its carried replicas again: the agent answers as is.
	_, err = f.env.ExecuteActivity(f.acts.StartReplica, contract.StartReplicaInput{ReplicaID: id, Spec: spec})
	require.NoError(t, err, "a running replica must not fail for a secret deleted after its start")
	require.Len(t, f.agent.starts, 2)
	require.Empty(t, f.agent.starts[1].Secrets, "no value is sent that the workspace no longer has")
}
