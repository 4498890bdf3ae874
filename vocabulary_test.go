package modelplane_test

import (
	"testing"

	"github.com/modelplane/modelplane"
)

func TestDeploymentStatus_PredicatesCoverEveryDocumentedValue(t *testing.T) {
	if got := len(modelplane.DeploymentStatuses()); got != 14 {
		t.Fatalf("API.md documents 14 deployment statuses; the vocabulary has %d", got)
	}
	for _, s := range modelplane.FailedDeploymentStatuses() {
		if !s.Valid() || !s.Stuck() || s.Autoscaled() || s.Wakes() {
			t.Errorf("%s: failed statuses are stuck, not autoscaled and do not wake", s)
		}
	}
	for _, s := range modelplane.AutoscaledDeploymentStatuses() {
		if !s.Valid() || s.Failed() || s.Deactivated() {
			t.Errorf("%s: an autoscaled status is neither failed nor deactivated", s)
		}
	}
	if !modelplane.DeploymentUnhealthy.Stuck() || modelplane.DeploymentUnhealthy.Failed() {
		t.Errorf("UNHEALTHY is stuck (waiting ends) but not failed (a replica may come back)")
	}
	if modelplane.DeploymentStatus("ACTIV").Valid() {
		t.Errorf("a misspelt status must not be valid")
	}
}

func TestReplicaState_LiveIsEveryStateThatHasNotEnded(t *testing.T) {
	live := 0
	for _, s := range modelplane.ReplicaStates() {
		if s.Live() == s.Ended() {
			t.Errorf("%s: live %v, ended %v; exactly one must hold", s, s.Live(), s.Ended())
		}
		if s.Live() {
			live++
		}
		if s.Serves() && (!s.Live() || s.Starting()) {
			t.Errorf("%s serves requests, so it is live and no longer starting", s)
		}
	}
	if live != 5 {
		t.Errorf("live states: got %d, want 5 (PENDING STARTING READY DRAINING STOPPING)", live)
	}
	if modelplane.ReplicaState("").Live() {
		t.Errorf("the empty state is not live")
	}
}

func TestPromotionStatus_EndedAndInProgressSplitTheSet(t *testing.T) {
	for _, s := range modelplane.PromotionStatuses() {
		if s.Ended() == s.InProgress() {
			t.Errorf("%s: ended %v, in progress %v; exactly one must hold", s, s.Ended(), s.InProgress())
		}
		if s.SplitsTraffic() && !s.InProgress() {
			t.Errorf("%s splits traffic but has ended", s)
		}
	}
}

func TestAsyncStatus_OpenAndEndedSplitTheSet(t *testing.T) {
	for _, s := range modelplane.AsyncStatuses() {
		if s.Open() == s.Ended() {
			t.Errorf("%s: open %v, ended %v; exactly one must hold", s, s.Open(), s.Ended())
		}
		if s.Delivers() && !s.Ended() {
			t.Errorf("%s delivers a webhook but has not ended", s)
		}
	}
	if modelplane.AsyncCanceled.Delivers() {
		t.Errorf("a canceled request's caller already knows: no webhook")
	}
}

func TestNewID_IsLowercaseAlphanumericOfTheAskedLength(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := modelplane.NewID(8)
		if len(id) != 8 {
			t.Fatalf("NewID(8) = %q: want 8 characters", id)
		}
		for _, c := range id {
			if (c < 'a' || c > 'z') && (c < '0' || c > '9') {
				t.Fatalf("NewID(8) = %q: %q is not a lowercase letter or digit", id, c)
			}
		}
		if seen[id] {
			t.Fatalf("NewID(8) repeated %q within 1000 draws", id)
		}
		seen[id] = true
	}
}
