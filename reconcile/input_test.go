package reconcile_test

import (
	"testing"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/reconcile"
	"github.com/modelplane/modelplane/store"
	"github.com/modelplane/modelplane/workflows/contract"
)

func TestDeploymentInput_HandsOverLiveReplicasFromTheRow(t *testing.T) {
	node := "n1"
	ready := store.Replica{ID: "r1", NodeID: &node, State: modelplane.ReplicaReady, Address: "10.0.0.1:9000"}
	pending := store.Replica{ID: "r2", State: modelplane.ReplicaPending}
	draining := store.Replica{ID: "r3", NodeID: &node, State: modelplane.ReplicaDraining, Address: "10.0.0.1:9001"}
	dep := func(s modelplane.DeploymentStatus) store.Deployment {
		return store.Deployment{ID: "d1", ModelID: "m1", Status: s, StatusReason: "why"}
	}
	for _, tc := range []struct {
		name     string
		d        store.Deployment
		live     []store.Replica
		carried  bool
		replicas int
		inactive bool
		waking   bool
		handed   []string
		ever     bool
	}{
		{"building without replicas builds again", dep(modelplane.DeploymentBuilding), nil, false, 1, false, false, nil, false},
		{"active keeps its replicas", dep(modelplane.DeploymentActive), []store.Replica{ready, pending}, true, 2, false, false, []string{"r1", "r2"}, true},
		{"draining replicas are handed over but not wanted", dep(modelplane.DeploymentActive), []store.Replica{ready, draining}, true, 1, false, false, []string{"r1", "r3"}, true},
		{"active without replicas wants one", dep(modelplane.DeploymentActive), nil, true, 1, false, false, nil, true},
		{"scaled to zero stays at zero", dep(modelplane.DeploymentScaledToZero), nil, true, 0, false, false, nil, true},
		{"waking up keeps waking", dep(modelplane.DeploymentWakingUp), []store.Replica{pending}, true, 1, false, true, []string{"r2"}, true},
		{"inactive stays inactive", dep(modelplane.DeploymentInactive), []store.Replica{ready}, true, 0, true, false, nil, true},
		{"deactivating ends inactive", dep(modelplane.DeploymentDeactivating), nil, true, 0, true, false, nil, true},
		{"build failed stays failed", dep(modelplane.DeploymentBuildFailed), nil, true, 0, false, false, nil, false},
		{"deploying has not served", dep(modelplane.DeploymentDeploying), []store.Replica{pending}, true, 1, false, false, []string{"r2"}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := reconcile.DeploymentInput(tc.d, tc.live)
			if in.DeploymentID != "d1" || in.ModelID != "m1" {
				t.Fatalf("input names %s/%s, want m1/d1", in.ModelID, in.DeploymentID)
			}
			if in.Replicas != tc.replicas {
				t.Errorf("Replicas = %d, want %d", in.Replicas, tc.replicas)
			}
			if (in.Carried != nil) != tc.carried {
				t.Fatalf("carried = %v, want %v", in.Carried != nil, tc.carried)
			}
			if in.Carried == nil {
				return
			}
			c := in.Carried
			if c.Inactive != tc.inactive || c.Waking != tc.waking || c.EverActive != tc.ever {
				t.Errorf("inactive, waking, everActive = %v, %v, %v; want %v, %v, %v",
					c.Inactive, c.Waking, c.EverActive, tc.inactive, tc.waking, tc.ever)
			}
			if tc.inactive && c.Status != modelplane.DeploymentInactive {
				t.Errorf("carried status %s, want INACTIVE", c.Status)
			}
			var ids []string
			for _, r := range c.Replicas {
				ids = append(ids, r.ID)
			}
			if len(ids) != len(tc.handed) {
				t.Fatalf("handed over %v, want %v", ids, tc.handed)
			}
			for i := range ids {
				if ids[i] != tc.handed[i] {
					t.Fatalf("handed over %v, want %v", ids, tc.handed)
				}
			}
			if len(c.Replicas) > 0 && c.Replicas[0].ID == "r1" {
				want := contract.ReplicaInfo{ID: "r1", NodeID: "n1", State: modelplane.ReplicaReady, Address: "10.0.0.1:9000"}
				if c.Replicas[0] != want {
					t.Errorf("replica r1 handed over as %+v, want %+v", c.Replicas[0], want)
				}
			}
		})
	}
}
