package docker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modelplane/modelplane/agent/runtime"
)

const testImage = "registry.example.com:5000/team/llm:v2"

func gpuSpec() runtime.Spec {
	return runtime.Spec{
		ReplicaID:    "r-1",
		DeploymentID: "d-1",
		Environment:  "production",
		Image:        testImage,
		Env:          map[string]string{"MODEL_NAME": "llm", "HF_TOKEN": "s3cret", "PORT": "9999"},
		GPUUUIDs:     []string{"GPU-0a1b2c3d-aaaa", "MIG-4e5f6a7b-bbbb"},
		Port:         31001,
	}
}

func cpuSpec() runtime.Spec {
	s := gpuSpec()
	s.GPUUUIDs = nil
	s.Environment = ""
	return s
}

// wantJSON compares got, re-encoded, with the JSON document want, ignoring formatting only.
func wantJSON(t *testing.T, what string, got any, want string) {
	t.Helper()
	var w any
	if err := json.Unmarshal([]byte(want), &w); err != nil {
		t.Fatalf("bad expectation for %s: %v", what, err)
	}
	gb, _ := json.Marshal(got)
	var g any
	_ = json.Unmarshal(gb, &g)
	if !reflect.DeepEqual(g, w) {
		t.Errorf("%s:\n got %s\nwant %s", what, gb, want)
	}
}

func wantCalls(t *testing.T, f *fakeEngine, want ...string) {
	t.Helper()
	if got := f.callList(); !slices.Equal(got, want) {
		t.Errorf("engine calls:\n got %q\nwant %q", got, want)
	}
}

func sorted(s []string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// hardening is what every model container's HostConfig carries against the code it runs.
const hardening = `"CapDrop": ["ALL"], "SecurityOpt": ["no-new-privileges"], "PidsLimit": 4096, "Privileged": false`

func TestStart_ModelContainersDropAllCapabilitiesAndMountTheirOwnPathsReadOnly(t *testing.T) {
	specs := map[string]func() runtime.Spec{
		"gpus": gpuSpec,
		"cpu":  cpuSpec,
		"custom server with secrets": func() runtime.Spec {
			s := cpuSpec()
			s.Command, s.ContainerPort = []string{"/bin/sh", "-c", "serve"}, 8000
			s.SecretsDir = "/var/lib/modelplane/replicas/r-1/secrets"
			s.PackageDir, s.PackageMount = "/var/lib/modelplane/replicas/r-1/pkg", "/app"
			return s
		},
	}
	for name, spec := range specs {
		t.Run(name, func(t *testing.T) {
			f, rt := newFakeEngine(t)
			f.images[imageKey(testImage)] = true
			if _, err := rt.Start(t.Context(), spec()); err != nil {
				t.Fatalf("Start: %v", err)
			}
			hc := f.creates[0].HostConfig
			if !slices.Equal(hc.CapDrop, []string{"ALL"}) {
				t.Errorf("CapDrop %q, want [ALL]", hc.CapDrop)
			}
			if !slices.Equal(hc.SecurityOpt, []string{"no-new-privileges"}) {
				t.Errorf("SecurityOpt %q, want [no-new-privileges]", hc.SecurityOpt)
			}
			if hc.PidsLimit == nil || *hc.PidsLimit != PidsLimit {
				t.Errorf("PidsLimit %v, want %d", hc.PidsLimit, PidsLimit)
			}
			if hc.Privileged {
				t.Error("the container is privileged")
			}
			for _, b := range hc.Binds {
				if !strings.HasSuffix(b, ":ro") || !strings.HasPrefix(b, "/var/lib/modelplane/replicas/r-1/") {
					t.Errorf("bind %q: only the replica's own paths may be mounted, read-only", b)
				}
			}
			raw := f.rawCreates[0].(map[string]any)["HostConfig"].(map[string]any)
			if _, ok := raw["ReadonlyRootfs"]; ok {
				t.Error("ReadonlyRootfs is set: images that write caches into their filesystem would break")
			}
		})
	}
}

func TestStart_WithGPUsRequestsCDIDevicesAndLabelsContainer(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true

	h, err := rt.Start(t.Context(), gpuSpec())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if len(f.creates) != 1 {
		t.Fatalf("want 1 create, got %d", len(f.creates))
	}
	c := f.container("mp-r-1")
	if c == nil {
		t.Fatal("no container named mp-r-1 after Start")
	}
	want := runtime.Handle{ReplicaID: "r-1", Runtime: "docker", ContainerID: c.ID, Address: "127.0.0.1:31001"}
	if h != want {
		t.Errorf("handle:\n got %+v\nwant %+v", h, want)
	}
	if c.Status != "running" {
		t.Errorf("container status %q, want running", c.Status)
	}
	wantCalls(t, f, "POST /containers/create", "POST /containers/"+c.ID+"/start")

	body := f.creates[0]
	if body.Name != "mp-r-1" || body.Image != testImage {
		t.Errorf("create name=%q image=%q, want mp-r-1 and %s", body.Name, body.Image, testImage)
	}
	wantEnv := []string{
		"HF_TOKEN=s3cret",
		"MODEL_NAME=llm",
		"PORT=8080", // the package's PORT=9999 is overridden
		"MODELPLANE_ENVIRONMENT=production",
		"MODELPLANE_DEPLOYMENT_ID=d-1",
		"NVIDIA_VISIBLE_DEVICES=GPU-0a1b2c3d-aaaa,MIG-4e5f6a7b-bbbb",
		"CUDA_VISIBLE_DEVICES=GPU-0a1b2c3d-aaaa,MIG-4e5f6a7b-bbbb",
	}
	if got := sorted(body.Env); !slices.Equal(got, sorted(wantEnv)) {
		t.Errorf("env:\n got %q\nwant %q", got, sorted(wantEnv))
	}
	wantLabels := map[string]string{
		"modelplane.replica":    "r-1",
		"modelplane.deployment": "d-1",
		"modelplane.gpus":       "GPU-0a1b2c3d-aaaa,MIG-4e5f6a7b-bbbb",
		"modelplane.agent":      "agent-1",
	}
	if !reflect.DeepEqual(body.Labels, wantLabels) {
		t.Errorf("labels:\n got %v\nwant %v", body.Labels, wantLabels)
	}
	raw := f.rawCreates[0].(map[string]any)
	wantJSON(t, "ExposedPorts", raw["ExposedPorts"], `{"8080/tcp":{}}`)
	wantJSON(t, "HostConfig", raw["HostConfig"], `{
		"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "31001"}]},
		"RestartPolicy": {"Name": "no"},
		`+hardening+`,
		"DeviceRequests": [{"Driver": "cdi", "DeviceIDs": ["nvidia.com/gpu=GPU-0a1b2c3d-aaaa", "nvidia.com/gpu=MIG-4e5f6a7b-bbbb"]}]
	}`)
}

func TestStart_WithoutGPUsHasNoDeviceRequestsAndHidesGPUs(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true

	if _, err := rt.Start(t.Context(), cpuSpec()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	body := f.creates[0]
	wantEnv := []string{"HF_TOKEN=s3cret", "MODEL_NAME=llm", "PORT=8080", "MODELPLANE_ENVIRONMENT=", "MODELPLANE_DEPLOYMENT_ID=d-1",
		"NVIDIA_VISIBLE_DEVICES=void"}
	if got := sorted(body.Env); !slices.Equal(got, sorted(wantEnv)) {
		t.Errorf("env:\n got %q\nwant %q", got, sorted(wantEnv))
	}
	if got := body.Labels["modelplane.gpus"]; got != "" {
		t.Errorf("modelplane.gpus label %q, want empty", got)
	}
	raw := f.rawCreates[0].(map[string]any)
	wantJSON(t, "HostConfig", raw["HostConfig"], `{
		"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "31001"}]},
		"RestartPolicy": {"Name": "no"},
		`+hardening+`
	}`)
}

func TestStart_ReusesExistingContainerOfSameReplica(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	// An earlier Start created the container, then the agent died before starting it.
	id := f.add(&fakeContainer{Name: "mp-r-1", Image: testImage, Status: "created", HostPort: "31001",
		Labels: map[string]string{LabelReplica: "r-1", LabelAgent: "agent-1"}})

	h, err := rt.Start(t.Context(), gpuSpec())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if h.ContainerID != id || h.Address != "127.0.0.1:31001" {
		t.Errorf("handle %+v, want container %s at 127.0.0.1:31001", h, id)
	}
	if c := f.container(id); c.Status != "running" {
		t.Errorf("reused container status %q, want running", c.Status)
	}
	wantCalls(t, f, "POST /containers/create", "GET /containers/mp-r-1/json", "POST /containers/"+id+"/start")

	// Starting again while it runs is still fine (the engine answers 304).
	h2, err := rt.Start(t.Context(), gpuSpec())
	if err != nil || h2 != h {
		t.Errorf("second Start = %+v, %v; want %+v, nil", h2, err, h)
	}
	if len(f.containers) != 1 {
		t.Errorf("want 1 container, got %d", len(f.containers))
	}
}

func TestStart_NameTakenByForeignContainerIsError(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	id := f.add(&fakeContainer{Name: "mp-r-1", Image: "nginx", Status: "running", HostPort: "31001",
		Labels: map[string]string{LabelReplica: "r-other"}})

	_, err := rt.Start(t.Context(), gpuSpec())
	if err == nil || !strings.Contains(err.Error(), "taken") || !strings.Contains(err.Error(), "r-other") {
		t.Fatalf("Start error = %v, want one saying mp-r-1 is taken by r-other", err)
	}
	wantCalls(t, f, "POST /containers/create", "GET /containers/mp-r-1/json")
	if c := f.container(id); c == nil || c.Status != "running" {
		t.Errorf("foreign container was touched: %+v", c)
	}
}

func TestStart_ExistingContainerOnAnotherPortIsError(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	f.add(&fakeContainer{Name: "mp-r-1", Image: testImage, Status: "exited", HostPort: "30000",
		Labels: map[string]string{LabelReplica: "r-1"}})

	_, err := rt.Start(t.Context(), gpuSpec())
	if err == nil || !strings.Contains(err.Error(), `port "30000"`) {
		t.Fatalf("Start error = %v, want one naming the existing port 30000", err)
	}
}

func TestStart_PullsMissingImageThenCreates(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.registry[imageKey(testImage)] = true

	h, err := rt.Start(t.Context(), gpuSpec())
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if want := []string{"registry.example.com:5000/team/llm:v2"}; !slices.Equal(f.pulls, want) {
		t.Errorf("pulls %q, want %q", f.pulls, want)
	}
	wantCalls(t, f, "POST /containers/create", "POST /images/create", "POST /containers/create", "POST /containers/"+h.ContainerID+"/start")
}

func TestStart_PullFailureSurfacesEngineMessage(t *testing.T) {
	t.Run("error in the progress stream", func(t *testing.T) {
		f, rt := newFakeEngine(t)
		f.registry[imageKey(testImage)] = true
		f.pullStreamError = "failed to register layer: no space left on device"
		_, err := rt.Start(t.Context(), gpuSpec())
		if err == nil || !strings.Contains(err.Error(), "no space left on device") {
			t.Fatalf("Start error = %v, want the stream's error", err)
		}
		wantCalls(t, f, "POST /containers/create", "POST /images/create")
	})
	t.Run("error status", func(t *testing.T) {
		_, rt := newFakeEngine(t)
		_, err := rt.Start(t.Context(), gpuSpec())
		if err == nil || !strings.Contains(err.Error(), "pull access denied for registry.example.com:5000/team/llm") {
			t.Fatalf("Start error = %v, want the engine's pull access denied", err)
		}
	})
}

func TestStart_StartFailureSurfacesMessageAndRemovesContainer(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	msg := `could not select device driver "cdi" with capabilities: []`
	f.fail["start"] = fakeFailure{http.StatusInternalServerError, msg}

	_, err := rt.Start(t.Context(), gpuSpec())
	if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "HTTP 500") {
		t.Fatalf("Start error = %v, want the engine's message %q", err, msg)
	}
	if len(f.containers) != 0 {
		t.Errorf("the container that failed to start was left behind: %d containers", len(f.containers))
	}
}

func TestStart_EngineErrorMessageSurfaced(t *testing.T) {
	f, rt := newFakeEngine(t)
	msg := "invalid reference format: repository name must be lowercase"
	f.fail["create"] = fakeFailure{http.StatusBadRequest, msg}
	_, err := rt.Start(t.Context(), gpuSpec())
	if err == nil || !strings.Contains(err.Error(), msg) || !strings.Contains(err.Error(), "HTTP 400") {
		t.Fatalf("Start error = %v, want the engine's message %q", err, msg)
	}
}

func TestStart_RejectsIncompleteSpec(t *testing.T) {
	_, rt := newFakeEngine(t)
	for name, mutate := range map[string]func(*runtime.Spec){
		"no replica": func(s *runtime.Spec) { s.ReplicaID = "" },
		"no image":   func(s *runtime.Spec) { s.Image = "" },
		"no port":    func(s *runtime.Spec) { s.Port = 0 },
	} {
		s := gpuSpec()
		mutate(&s)
		if _, err := rt.Start(t.Context(), s); err == nil {
			t.Errorf("%s: Start succeeded, want an error", name)
		}
	}
}

func TestStatus_RunningContainer(t *testing.T) {
	f, rt := newFakeEngine(t)
	id := f.add(&fakeContainer{Name: "mp-r-1", Status: "running", Labels: map[string]string{LabelReplica: "r-1"}})

	st, err := rt.Status(t.Context(), runtime.Handle{ReplicaID: "r-1", ContainerID: id})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if !st.Running || st.ExitCode != nil || st.Error != "" || st.LogTail != nil {
		t.Errorf("status %+v, want running with nothing else", st)
	}
	wantCalls(t, f, "GET /containers/"+id+"/json")
}

func TestStatus_ExitedReportsExitCodeAndDemuxedLogTail(t *testing.T) {
	f, rt := newFakeEngine(t)
	var frames []fakeFrame
	for i := 1; i <= 19; i++ {
		frames = append(frames, fakeFrame{byte(i%2 + 1), fmt.Sprintf("line %02d\n", i)})
	}
	// A stdout line split over two frames with a stderr line between them.
	frames = append(frames,
		fakeFrame{1, "CUDA error: out of "},
		fakeFrame{2, "warning\r\n"},
		fakeFrame{1, "memory\n"},
	)
	id := f.add(&fakeContainer{Name: "mp-r-1", Status: "exited", ExitCode: 3, Logs: frames})

	st, err := rt.Status(t.Context(), runtime.Handle{ReplicaID: "r-1", ContainerID: id})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if st.Running || st.ExitCode == nil || *st.ExitCode != 3 {
		t.Errorf("status running=%v exit=%v, want stopped with exit code 3", st.Running, st.ExitCode)
	}
	if st.Error != "" {
		t.Errorf("error %q, want none for a plain exit", st.Error)
	}
	// The engine sends the last 20 frames: lines 03 to 19 and the three frames above.
	var want []string
	for i := 3; i <= 19; i++ {
		want = append(want, fmt.Sprintf("line %02d", i))
	}
	want = append(want, "warning", "CUDA error: out of memory")
	if !slices.Equal(st.LogTail, want) {
		t.Errorf("log tail:\n got %q\nwant %q", st.LogTail, want)
	}
}

func TestStatus_ReportsOOMKillAndEngineError(t *testing.T) {
	f, rt := newFakeEngine(t)
	oom := f.add(&fakeContainer{Status: "exited", ExitCode: 137, OOMKilled: true})
	dead := f.add(&fakeContainer{Status: "dead", ExitCode: 128, Error: "failed to inject CDI devices: unresolvable CDI devices nvidia.com/gpu=GPU-x"})
	created := f.add(&fakeContainer{Status: "created"})

	for _, tc := range []struct {
		id, want string
		code     *int
	}{
		{oom, "out of memory", ptr(137)},
		{dead, "unresolvable CDI devices nvidia.com/gpu=GPU-x", ptr(128)},
		{created, "never started", nil},
	} {
		st, err := rt.Status(t.Context(), runtime.Handle{ContainerID: tc.id})
		if err != nil {
			t.Fatalf("Status: %v", err)
		}
		if !strings.Contains(st.Error, tc.want) {
			t.Errorf("error %q, want it to contain %q", st.Error, tc.want)
		}
		if !reflect.DeepEqual(st.ExitCode, tc.code) {
			t.Errorf("%s: exit code %v, want %v", tc.want, deref(st.ExitCode), deref(tc.code))
		}
	}
}

func TestStatus_TTYLogsAreReadRaw(t *testing.T) {
	f, rt := newFakeEngine(t)
	id := f.add(&fakeContainer{Status: "exited", ExitCode: 1, Tty: true, Logs: []fakeFrame{{0, "a\r\nb\n"}, {0, "c"}}})
	st, err := rt.Status(t.Context(), runtime.Handle{ContainerID: id})
	if err != nil {
		t.Fatalf("Status: %v", err)
	}
	if want := []string{"a", "b", "c"}; !slices.Equal(st.LogTail, want) {
		t.Errorf("log tail %q, want %q", st.LogTail, want)
	}
}

func TestStatus_UnreadableLogsStillReportExit(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.fail["logs"] = fakeFailure{http.StatusNotImplemented, `configured logging driver does not support reading`}
	id := f.add(&fakeContainer{Status: "exited", ExitCode: 2})
	st, err := rt.Status(t.Context(), runtime.Handle{ContainerID: id})
	if err != nil || st.ExitCode == nil || *st.ExitCode != 2 || st.LogTail != nil {
		t.Errorf("Status = %+v, %v; want exit code 2 without logs", st, err)
	}
}

func TestStatus_GoneContainerIsErrNotFound(t *testing.T) {
	_, rt := newFakeEngine(t)
	_, err := rt.Status(t.Context(), runtime.Handle{ReplicaID: "r-1", ContainerID: "feedface"})
	if !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Status error = %v, want runtime.ErrNotFound", err)
	}
}

func TestStatus_HandleWithoutContainerIDFindsContainerByName(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.add(&fakeContainer{Name: "mp-r-1", Status: "running"})
	st, err := rt.Status(t.Context(), runtime.Handle{ReplicaID: "r-1"})
	if err != nil || !st.Running {
		t.Errorf("Status = %+v, %v; want running", st, err)
	}
}

func TestStop_StopsWithGraceThenRemoves(t *testing.T) {
	for _, tc := range []struct {
		grace time.Duration
		t     string
	}{
		{10 * time.Second, "10"},
		{1500 * time.Millisecond, "2"}, // rounded up: never less grace than asked
		{0, "0"},
		{-time.Second, "0"},
	} {
		f, rt := newFakeEngine(t)
		id := f.add(&fakeContainer{Name: "mp-r-1", Status: "running"})
		if err := rt.Stop(t.Context(), runtime.Handle{ReplicaID: "r-1", ContainerID: id}, tc.grace); err != nil {
			t.Fatalf("Stop(%v): %v", tc.grace, err)
		}
		if want := []string{id + " t=" + tc.t}; !slices.Equal(f.stops, want) {
			t.Errorf("grace %v: stops %q, want %q", tc.grace, f.stops, want)
		}
		wantCalls(t, f, "POST /containers/"+id+"/stop", "DELETE /containers/"+id)
		if len(f.containers) != 0 {
			t.Errorf("grace %v: container not removed", tc.grace)
		}
	}
}

func TestStop_AlreadyExitedContainerIsRemoved(t *testing.T) {
	f, rt := newFakeEngine(t)
	id := f.add(&fakeContainer{Status: "exited", ExitCode: 1})
	if err := rt.Stop(t.Context(), runtime.Handle{ContainerID: id}, time.Second); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	if len(f.containers) != 0 {
		t.Error("exited container not removed")
	}
}

func TestStop_VanishedContainerIsFine(t *testing.T) {
	t.Run("gone before stop", func(t *testing.T) {
		f, rt := newFakeEngine(t)
		if err := rt.Stop(t.Context(), runtime.Handle{ReplicaID: "r-1", ContainerID: "feedface"}, time.Second); err != nil {
			t.Errorf("Stop of a vanished container: %v, want nil", err)
		}
		wantCalls(t, f, "POST /containers/feedface/stop")
	})
	t.Run("gone between stop and remove", func(t *testing.T) {
		f, rt := newFakeEngine(t)
		id := f.add(&fakeContainer{Status: "running"})
		f.fail["remove"] = fakeFailure{http.StatusNotFound, "No such container: " + id}
		if err := rt.Stop(t.Context(), runtime.Handle{ContainerID: id}, time.Second); err != nil {
			t.Errorf("Stop: %v, want nil", err)
		}
	})
	t.Run("removal already in progress", func(t *testing.T) {
		f, rt := newFakeEngine(t)
		id := f.add(&fakeContainer{Status: "running"})
		f.fail["remove"] = fakeFailure{http.StatusConflict, "removal of container " + id + " is already in progress"}
		if err := rt.Stop(t.Context(), runtime.Handle{ContainerID: id}, time.Second); err != nil {
			t.Errorf("Stop: %v, want nil", err)
		}
	})
}

func TestStop_EngineErrorSurfaced(t *testing.T) {
	f, rt := newFakeEngine(t)
	id := f.add(&fakeContainer{Status: "running"})
	msg := "cannot stop container: permission denied"
	f.fail["stop"] = fakeFailure{http.StatusInternalServerError, msg}
	err := rt.Stop(t.Context(), runtime.Handle{ContainerID: id}, time.Second)
	if err == nil || !strings.Contains(err.Error(), msg) {
		t.Fatalf("Stop error = %v, want the engine's message %q", err, msg)
	}
	wantCalls(t, f, "POST /containers/"+id+"/stop")
}

func TestAdopt(t *testing.T) {
	f, rt := newFakeEngine(t)
	mine := f.add(&fakeContainer{Name: "mp-r-1", Status: "running", Labels: map[string]string{LabelReplica: "r-1"}})
	other := f.add(&fakeContainer{Name: "mp-r-2", Status: "running", Labels: map[string]string{LabelReplica: "r-2"}})
	exited := f.add(&fakeContainer{Name: "mp-r-3", Status: "exited", Labels: map[string]string{LabelReplica: "r-3"}})

	for _, tc := range []struct {
		name string
		h    runtime.Handle
		want bool
	}{
		{"running with the replica's label", runtime.Handle{ReplicaID: "r-1", ContainerID: mine}, true},
		{"another replica's container", runtime.Handle{ReplicaID: "r-1", ContainerID: other}, false},
		{"not running", runtime.Handle{ReplicaID: "r-3", ContainerID: exited}, false},
		{"gone", runtime.Handle{ReplicaID: "r-4", ContainerID: "feedface"}, false},
	} {
		got, err := rt.Adopt(t.Context(), tc.h)
		if err != nil || got != tc.want {
			t.Errorf("%s: Adopt = %v, %v; want %v, nil", tc.name, got, err, tc.want)
		}
	}

	f.fail["inspect"] = fakeFailure{http.StatusInternalServerError, "engine is shutting down"}
	if _, err := rt.Adopt(t.Context(), runtime.Handle{ReplicaID: "r-1", ContainerID: mine}); err == nil || !strings.Contains(err.Error(), "engine is shutting down") {
		t.Errorf("Adopt error = %v, want the engine's message", err)
	}
}

func TestOrphans_ListsRunningContainersOfThisAgentNotKnown(t *testing.T) {
	f, rt := newFakeEngine(t)
	label := func(replica, agent string) map[string]string {
		return map[string]string{LabelReplica: replica, LabelAgent: agent}
	}
	f.add(&fakeContainer{Name: "mp-a", Status: "running", HostPort: "31001", Labels: label("a", "agent-1")})
	orphan := f.add(&fakeContainer{Name: "mp-b", Status: "running", HostPort: "31002", Labels: label("b", "agent-1")})
	f.add(&fakeContainer{Name: "mp-c", Status: "exited", HostPort: "31003", Labels: label("c", "agent-1")})
	f.add(&fakeContainer{Name: "mp-d", Status: "running", HostPort: "31004", Labels: label("d", "agent-2")})
	f.add(&fakeContainer{Name: "unrelated", Status: "running"})

	got, err := rt.Orphans(t.Context(), map[string]bool{"a": true})
	if err != nil {
		t.Fatalf("Orphans: %v", err)
	}
	want := []runtime.Handle{{ReplicaID: "b", Runtime: "docker", ContainerID: orphan, Address: "127.0.0.1:31002"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("orphans:\n got %+v\nwant %+v", got, want)
	}

	f.fail["list"] = fakeFailure{http.StatusInternalServerError, "database is locked"}
	if _, err := rt.Orphans(t.Context(), nil); err == nil || !strings.Contains(err.Error(), "database is locked") {
		t.Errorf("Orphans error = %v, want the engine's message", err)
	}
}

func TestOrphans_WithoutAgentIDIsError(t *testing.T) {
	rt := New(Options{BaseURL: "http://127.0.0.1:1"})
	if _, err := rt.Orphans(t.Context(), nil); err == nil {
		t.Error("Orphans without an agent ID succeeded, want an error")
	}
}

// TestUnixSocket_DialsEngineOverSocket runs the fake behind a real unix socket and lets the
// runtime find it through Options.Socket alone, as in production.
func TestUnixSocket_DialsEngineOverSocket(t *testing.T) {
	// Socket paths are limited to about 100 bytes; t.TempDir() can be longer.
	dir, err := os.MkdirTemp("", "mpdock")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen on %s: %v", sock, err)
	}
	f := newFake(t)
	f.images[imageKey(testImage)] = true
	srv := &http.Server{Handler: f.handler()}
	go func() { _ = srv.Serve(l) }()
	t.Cleanup(func() { _ = srv.Close() })

	if !Available(sock) {
		t.Fatalf("Available(%s) = false, want true", sock)
	}
	if Available(filepath.Join(dir, "missing.sock")) {
		t.Error("Available(missing socket) = true, want false")
	}
	regular := filepath.Join(dir, "file")
	if err := os.WriteFile(regular, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if Available(regular) {
		t.Error("Available(regular file) = true, want false")
	}

	rt := New(Options{Socket: sock, AgentID: "agent-1", APIVersion: "1.41"})
	h, err := rt.Start(t.Context(), gpuSpec())
	if err != nil {
		t.Fatalf("Start over the socket: %v", err)
	}
	if ok, err := rt.Adopt(t.Context(), h); err != nil || !ok {
		t.Errorf("Adopt over the socket = %v, %v; want true", ok, err)
	}
	if err := rt.Stop(t.Context(), h, time.Second); err != nil {
		t.Errorf("Stop over the socket: %v", err)
	}
	if _, err := rt.Status(t.Context(), h); !errors.Is(err, runtime.ErrNotFound) {
		t.Errorf("Status after Stop = %v, want runtime.ErrNotFound", err)
	}
}

func TestName(t *testing.T) {
	if got := New(Options{}).Name(); got != "docker" {
		t.Errorf("Name() = %q, want docker", got)
	}
}

func ptr(i int) *int { return &i }

func deref(p *int) any {
	if p == nil {
		return nil
	}
	return *p
}

func TestStart_MountsTheSecretsDirectoryReadOnlyAtSlashSecrets(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	spec := cpuSpec()
	spec.SecretsDir = "/var/lib/modelplane/replicas/r-1/secrets"
	if _, err := rt.Start(t.Context(), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	raw := f.rawCreates[0].(map[string]any)
	wantJSON(t, "HostConfig", raw["HostConfig"], `{
		"PortBindings": {"8080/tcp": [{"HostIp": "127.0.0.1", "HostPort": "31001"}]},
		"RestartPolicy": {"Name": "no"},
		`+hardening+`,
		"Binds": ["/var/lib/modelplane/replicas/r-1/secrets:/secrets:ro"]
	}`)
}

func TestStart_CustomServerRunsItsCommandOnItsPortAsItsUser(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	spec := cpuSpec()
	spec.Command = []string{"/bin/sh", "-c", "vllm serve --port 8000"}
	spec.ContainerPort, spec.User = 8000, "1000"
	spec.PackageDir, spec.PackageMount = "/var/lib/modelplane/replicas/r-1/pkg", "/app"
	if _, err := rt.Start(t.Context(), spec); err != nil {
		t.Fatalf("Start: %v", err)
	}
	raw := f.rawCreates[0].(map[string]any)
	wantJSON(t, "Entrypoint", raw["Entrypoint"], `["/bin/sh"]`)
	wantJSON(t, "Cmd", raw["Cmd"], `["-c", "vllm serve --port 8000"]`)
	wantJSON(t, "User", raw["User"], `"1000"`)
	wantJSON(t, "WorkingDir", raw["WorkingDir"], `"/app"`)
	wantJSON(t, "ExposedPorts", raw["ExposedPorts"], `{"8000/tcp": {}}`)
	wantJSON(t, "HostConfig", raw["HostConfig"], `{
		"PortBindings": {"8000/tcp": [{"HostIp": "127.0.0.1", "HostPort": "31001"}]},
		"RestartPolicy": {"Name": "no"},
		`+hardening+`,
		"Binds": ["/var/lib/modelplane/replicas/r-1/pkg:/app:ro"]
	}`)
	if !slices.Contains(f.creates[0].Env, "PORT=8000") {
		t.Errorf("env %q lacks PORT=8000, the server's port in its container", f.creates[0].Env)
	}
}

func TestStart_WithoutCommandRunsTheImagesOwn(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	if _, err := rt.Start(t.Context(), cpuSpec()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	raw := f.rawCreates[0].(map[string]any)
	for _, k := range []string{"Entrypoint", "Cmd", "User", "WorkingDir"} {
		if v, ok := raw[k]; ok {
			t.Errorf("%s is %v: the image's own must run", k, v)
		}
	}
}

func TestStart_PublishesOnTheReplicaHostAndRecordsIt(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	spec := cpuSpec()
	spec.Host = "10.1.2.3"
	h, err := rt.Start(t.Context(), spec)
	if err != nil {
		t.Fatalf("Start: %v", err)
	}
	if h.Address != "10.1.2.3:31001" {
		t.Errorf("Address %q, want 10.1.2.3:31001", h.Address)
	}
	wantJSON(t, "port bindings", f.creates[0].HostConfig.PortBindings,
		`{"8080/tcp": [{"HostIp": "10.1.2.3", "HostPort": "31001"}]}`)
	for _, kv := range f.creates[0].Env {
		if strings.HasPrefix(kv, "MODELPLANE_BIND=") {
			t.Errorf("container environment has %s: the server listens in its own network namespace", kv)
		}
	}

	// Started again on the same replica host, the container is reused where it is.
	h2, err := rt.Start(t.Context(), spec)
	if err != nil || h2 != h {
		t.Errorf("second Start = %+v, %v; want %+v, nil", h2, err, h)
	}

	// An IPv6 replica host makes a bracketed address.
	spec.ReplicaID, spec.Host = "r-6", "fd00::7"
	h, err = rt.Start(t.Context(), spec)
	if err != nil || h.Address != "[fd00::7]:31001" {
		t.Errorf("IPv6 Start = %+v, %v; want address [fd00::7]:31001", h, err)
	}
}

func TestStart_ExistingContainerOnAnotherReplicaHostIsError(t *testing.T) {
	f, rt := newFakeEngine(t)
	f.images[imageKey(testImage)] = true
	// Started before the agent was given a --replica-host.
	f.add(&fakeContainer{Name: "mp-r-1", Image: testImage, Status: "running", HostPort: "31001",
		Labels: map[string]string{LabelReplica: "r-1"}})
	spec := gpuSpec()
	spec.Host = "10.1.2.3"
	_, err := rt.Start(t.Context(), spec)
	if err == nil || !strings.Contains(err.Error(), "publishes 127.0.0.1:31001, spec asks for 10.1.2.3:31001") {
		t.Fatalf("Start error = %v, want one naming both addresses", err)
	}
}

func TestOrphans_AddressIsWhereThePortIsPublished(t *testing.T) {
	f, rt := newFakeEngine(t)
	labels := map[string]string{LabelReplica: "b", LabelAgent: "agent-1"}
	id := f.add(&fakeContainer{Name: "mp-b", Status: "running", HostPort: "31002", HostIP: "10.1.2.3", Labels: labels})
	got, err := rt.Orphans(t.Context(), nil)
	if err != nil {
		t.Fatalf("Orphans: %v", err)
	}
	want := []runtime.Handle{{ReplicaID: "b", Runtime: "docker", ContainerID: id, Address: "10.1.2.3:31002"}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("orphans:\n got %+v\nwant %+v", got, want)
	}
}
