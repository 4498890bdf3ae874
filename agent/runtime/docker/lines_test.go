package docker

import (
	"slices"
	"testing"
	"time"

	"github.com/modelplane/modelplane/agent/runtime"
)

func TestLines_AreTheEnginesStampedLinesWithinTheWindowByStream(t *testing.T) {
	f, rt := newFakeEngine(t)
	t0 := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	stamp := func(s int) string { return t0.Add(time.Duration(s)*time.Second).Format(time.RFC3339Nano) + " " }
	id := f.add(&fakeContainer{Name: "mp-r-1", Status: "running", Logs: []fakeFrame{
		{1, stamp(0) + "loading\n"},
		{2, stamp(1) + "WARNING: slow\r\n"},
		{1, stamp(2) + "ready\n" + stamp(3) + "serving\n"},
	}})
	lines, err := rt.Lines(t.Context(), runtime.Handle{ReplicaID: "r-1", ContainerID: id}, t0.Add(time.Second), t0.Add(3*time.Second))
	if err != nil {
		t.Fatalf("Lines: %v", err)
	}
	want := []runtime.Line{{Time: t0.Add(time.Second), Stream: "stderr", Message: "WARNING: slow"},
		{Time: t0.Add(2 * time.Second), Stream: "stdout", Message: "ready"}}
	if !slices.Equal(lines, want) {
		t.Errorf("lines in [1s, 3s) = %v, want %v", lines, want)
	}

	gone, err := rt.Lines(t.Context(), runtime.Handle{ReplicaID: "r-2", ContainerID: "nosuchcontainer"}, time.Time{}, time.Time{})
	if err != nil || len(gone) != 0 {
		t.Errorf("a removed container has no lines, got %v, %v", gone, err)
	}
}
