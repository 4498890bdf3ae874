package check

import (
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// loadCompose loads the Compose files as `docker compose -f ... config` does (compose-go is
// its loader): schema validation, interpolation, merging, and the consistency checks that
// refuse a depends_on, volume or network_mode naming nothing.
func loadCompose(t *testing.T, env []string, profiles []string, files ...string) *types.Project {
	t.Helper()
	var paths []string
	for _, f := range files {
		paths = append(paths, filepath.Join(deployDir, f))
	}
	opts, err := cli.NewProjectOptions(paths,
		cli.WithWorkingDirectory(deployDir),
		cli.WithEnv(env),
		cli.WithProfiles(profiles),
		cli.WithConsistency(true),
		cli.WithResolvedPaths(true),
	)
	if err != nil {
		t.Fatalf("compose options: %v", err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("%s does not load as docker compose config would: %v", strings.Join(files, ", "), err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, ok := p.Services[name]
	if !ok {
		t.Fatalf("service %s: want it in the project, got only %v", name, slices.Sorted(maps.Keys(p.Services)))
	}
	return s
}

// assertEnv checks that service name sets each variable of want to its value.
func assertEnv(t *testing.T, name string, s types.ServiceConfig, want map[string]string) {
	t.Helper()
	for k, v := range want {
		if got := env(s, k); got != v {
			t.Errorf("%s %s: want %q, got %q", name, k, v, got)
		}
	}
}

func env(s types.ServiceConfig, name string) string {
	if v := s.Environment[name]; v != nil {
		return *v
	}
	return ""
}

func TestCompose_HasEveryPartOfTheStackWiredTogether(t *testing.T) {
	p := loadCompose(t, nil, nil, "compose.yaml")
	want := []string{"postgres", "temporal", "temporal-ui", "init", "migrate", "api", "gateway", "worker", "agent"}
	got := slices.Sorted(maps.Keys(p.Services))
	for _, name := range want {
		if !slices.Contains(got, name) {
			t.Errorf("service %s: want it started by default, got services %v", name, got)
		}
	}
	for _, name := range []string{"seaweedfs", "seaweedfs-bucket"} {
		if _, ok := p.Services[name]; ok {
			t.Errorf("%s: want it only under the s3 profile, got it started by default", name)
		}
	}

	for _, name := range []string{"migrate", "api", "gateway", "worker"} {
		s := service(t, p, name)
		if s.Image != "modelplane:latest" || s.User != "65532:65532" {
			t.Errorf("%s: want the static image as user 65532, got image %q user %q", name, s.Image, s.User)
		}
		if got := s.Command; len(got) == 0 || got[0] != name {
			t.Errorf("%s: want command %q, got %v", name, name, got)
		}
		if !strings.Contains(env(s, "DATABASE_URL"), "@postgres:5432/modelplane") || env(s, "TEMPORAL_ADDRESS") != "temporal:7233" {
			t.Errorf("%s: want PostgreSQL and Temporal of this project, got DATABASE_URL %q TEMPORAL_ADDRESS %q",
				name, env(s, "DATABASE_URL"), env(s, "TEMPORAL_ADDRESS"))
		}
	}
	agent := service(t, p, "agent")
	if agent.Image != "modelplane-agent:latest" || agent.User != "" {
		t.Errorf("agent: want the agent image as root, got image %q user %q", agent.Image, agent.User)
	}

	// Health checks probe /readyz (the agent: /healthz) on the port each one listens on.
	for name, url := range map[string]string{
		"api": "http://127.0.0.1:8080/readyz", "worker": "http://127.0.0.1:9090/readyz",
		"gateway": "http://127.0.0.1:8081/readyz", "agent": "http://127.0.0.1:7070/healthz",
	} {
		s := service(t, p, name)
		want := []string{"CMD", "/usr/local/bin/modelplane", "probe", url}
		if s.HealthCheck == nil || !slices.Equal([]string(s.HealthCheck.Test), want) {
			t.Errorf("%s healthcheck: want %v, got %+v", name, want, s.HealthCheck)
		}
	}
	for name, port := range map[string]string{"MODELPLANE_LISTEN": ":8080", "MODELPLANE_WORKER_METRICS_LISTEN": ":9090"} {
		owner := map[string]string{"MODELPLANE_LISTEN": "api", "MODELPLANE_WORKER_METRICS_LISTEN": "worker"}[name]
		if got := env(service(t, p, owner), name); got != port {
			t.Errorf("%s %s: want %q (what its healthcheck probes), got %q", owner, name, port, got)
		}
	}
	if got := env(service(t, p, "gateway"), "MODELPLANE_GATEWAY_LISTEN"); got != ":8081" {
		t.Errorf("gateway MODELPLANE_GATEWAY_LISTEN: want :8081, got %q", got)
	}
	if got := env(agent, "MODELPLANE_AGENT_LISTEN"); got != ":7070" {
		t.Errorf("agent MODELPLANE_AGENT_LISTEN: want :7070, got %q", got)
	}

	// Start order: each waits for what it needs to be healthy or done.
	for name, deps := range map[string]map[string]string{
		"temporal": {"postgres": types.ServiceConditionHealthy},
		"migrate":  {"postgres": types.ServiceConditionHealthy},
		"api": {"init": types.ServiceConditionCompletedSuccessfully, "migrate": types.ServiceConditionCompletedSuccessfully,
			"temporal": types.ServiceConditionHealthy},
		"worker": {"init": types.ServiceConditionCompletedSuccessfully, "migrate": types.ServiceConditionCompletedSuccessfully,
			"temporal": types.ServiceConditionHealthy},
		"agent":   {"init": types.ServiceConditionCompletedSuccessfully, "api": types.ServiceConditionHealthy},
		"gateway": {"agent": types.ServiceConditionStarted, "migrate": types.ServiceConditionCompletedSuccessfully},
	} {
		s := service(t, p, name)
		for dep, cond := range deps {
			if got, ok := s.DependsOn[dep]; !ok || got.Condition != cond {
				t.Errorf("%s depends_on %s: want condition %s, got %+v", name, dep, cond, s.DependsOn)
			}
		}
	}

	// Replicas listen on the agent's loopback: the gateway must share its network.
	if got := service(t, p, "gateway").NetworkMode; got != "service:agent" {
		t.Errorf("gateway network_mode: want service:agent, got %q", got)
	}

	// The API and the worker share the blob store and the secrets; the agent has the token.
	for _, name := range []string{"api", "worker"} {
		s := service(t, p, name)
		assertMount(t, name, s, "secrets", "/run/modelplane", true)
		assertMount(t, name, s, "blobs", "/var/lib/modelplane/blobs", false)
		assertEnv(t, name, s, map[string]string{
			"MODELPLANE_BLOB_DIR":         "/var/lib/modelplane/blobs",
			"MODELPLANE_BLOB_STORE":       "dir",
			"MODELPLANE_NODE_TOKEN_FILE":  "/run/modelplane/node-token",
			"MODELPLANE_SECRETS_KEY_FILE": "/run/modelplane/secrets-key",
		})
	}
	assertMount(t, "agent", agent, "secrets", "/run/modelplane", true)
	assertMount(t, "agent", agent, "agent", "/var/lib/modelplane/agent", false)
	assertMount(t, "postgres", service(t, p, "postgres"), "postgres", "/var/lib/postgresql/data", false)
	if got := env(agent, "MODELPLANE_NODE_TOKEN_FILE"); got != "/run/modelplane/node-token" {
		t.Errorf("agent MODELPLANE_NODE_TOKEN_FILE: want the API's token file, got %q", got)
	}
	if got := env(agent, "MODELPLANE_API_URL"); got != "http://api:8080" {
		t.Errorf("agent MODELPLANE_API_URL: want http://api:8080, got %q", got)
	}
	if got := env(service(t, p, "worker"), "MODELPLANE_API_URL"); got != "http://api:8080" {
		t.Errorf("worker MODELPLANE_API_URL (archives as agents fetch them): want http://api:8080, got %q", got)
	}
	if got := env(agent, "MODELPLANE_REQUIRE_ISOLATION"); got != "true" {
		t.Errorf("agent MODELPLANE_REQUIRE_ISOLATION: want true, got %q", got)
	}

	// The password reaches PostgreSQL, Temporal and every DATABASE_URL alike.
	p = loadCompose(t, []string{"POSTGRES_PASSWORD=s3cret"}, nil, "compose.yaml")
	if got := env(service(t, p, "postgres"), "POSTGRES_PASSWORD"); got != "s3cret" {
		t.Errorf("postgres POSTGRES_PASSWORD: want s3cret, got %q", got)
	}
	if got := env(service(t, p, "temporal"), "POSTGRES_PWD"); got != "s3cret" {
		t.Errorf("temporal POSTGRES_PWD: want s3cret, got %q", got)
	}
	for _, name := range []string{"migrate", "api", "gateway", "worker"} {
		if got := env(service(t, p, name), "DATABASE_URL"); !strings.Contains(got, ":s3cret@postgres") {
			t.Errorf("%s DATABASE_URL: want the password, got %q", name, got)
		}
	}
}

func assertMount(t *testing.T, name string, s types.ServiceConfig, source, target string, readOnly bool) {
	t.Helper()
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source == source && v.Target == target {
			if v.ReadOnly != readOnly {
				t.Errorf("%s volume %s at %s: want read-only %v, got %v", name, source, target, readOnly, v.ReadOnly)
			}
			return
		}
	}
	t.Errorf("%s: want volume %s at %s, got %+v", name, source, target, s.Volumes)
}

func TestCompose_S3ProfileAndGPUOverrideLoad(t *testing.T) {
	p := loadCompose(t, nil, []string{"s3"}, "compose.yaml")
	s := service(t, p, "seaweedfs")
	if s.HealthCheck == nil || !slices.Contains(s.Command, "-s3") {
		t.Errorf("seaweedfs: want an S3 server with a healthcheck, got command %v healthcheck %+v", s.Command, s.HealthCheck)
	}

	// Without the profile the API and the worker do not wait for a bucket nobody makes: the
	// dependency is optional, and compose drops it.
	p = loadCompose(t, nil, nil, "compose.yaml").WithoutUnresolvedOptionalDependencies()
	for _, name := range []string{"api", "worker"} {
		if got, ok := service(t, p, name).DependsOn["seaweedfs-bucket"]; ok {
			t.Errorf("%s depends_on seaweedfs-bucket without the s3 profile: want it dropped, got %+v", name, got)
		}
	}

	p = loadCompose(t, nil, nil, "compose.yaml", "compose.gpu.yaml")
	agent := service(t, p, "agent")
	if agent.Deploy == nil || len(agent.Deploy.Resources.Reservations.Devices) != 1 {
		t.Fatalf("agent with compose.gpu.yaml: want one device reservation, got %+v", agent.Deploy)
	}
	d := agent.Deploy.Resources.Reservations.Devices[0]
	if d.Driver != "nvidia" || !slices.Contains(d.Capabilities, "gpu") {
		t.Errorf("agent GPUs: want the nvidia driver's gpu capability, got %+v", d)
	}
	if got := env(agent, "MODELPLANE_GPU_PROFILE"); got != "real" {
		t.Errorf("agent with GPUs MODELPLANE_GPU_PROFILE: want real, got %q", got)
	}
	// The override keeps what it does not name.
	if got := env(agent, "MODELPLANE_API_URL"); got != "http://api:8080" {
		t.Errorf("agent with GPUs MODELPLANE_API_URL: want http://api:8080 kept, got %q", got)
	}
}

func TestCompose_S3ProfileKeepsPackagesInSeaweedFS(t *testing.T) {
	p := loadCompose(t, []string{
		"MODELPLANE_BLOB_STORE=s3",
		"MODELPLANE_S3_ACCESS_KEY_ID=mpkey",
		"MODELPLANE_S3_SECRET_ACCESS_KEY=mpsecret",
	}, []string{"s3"}, "compose.yaml")

	// The API and the worker sign with SeaweedFS's key, address it by its service name, and
	// wait for the bucket.
	for _, name := range []string{"api", "worker"} {
		s := service(t, p, name)
		assertEnv(t, name, s, map[string]string{
			"MODELPLANE_BLOB_STORE":           "s3",
			"MODELPLANE_S3_BUCKET":            "modelplane",
			"MODELPLANE_S3_PATH_STYLE":        "true",
			"MODELPLANE_S3_ACCESS_KEY_ID":     "mpkey",
			"MODELPLANE_S3_SECRET_ACCESS_KEY": "mpsecret",
			"MODELPLANE_BLOB_DIR":             "/var/lib/modelplane/blobs",
		})
		if got := env(s, "MODELPLANE_S3_ENDPOINT"); !strings.HasPrefix(got, "http://seaweedfs:8333") {
			t.Errorf("%s MODELPLANE_S3_ENDPOINT: want the seaweedfs service's S3 port, got %q", name, got)
		}
		if got, ok := s.DependsOn["seaweedfs-bucket"]; !ok || got.Condition != types.ServiceConditionCompletedSuccessfully {
			t.Errorf("%s depends_on seaweedfs-bucket: want it done first, got %+v", name, s.DependsOn)
		}
	}
	// The gateway and migrate touch no package: no key for them.
	for _, name := range []string{"gateway", "migrate"} {
		if got := env(service(t, p, name), "MODELPLANE_S3_SECRET_ACCESS_KEY"); got != "" {
			t.Errorf("%s MODELPLANE_S3_SECRET_ACCESS_KEY: want none, got %q", name, got)
		}
	}

	// SeaweedFS knows that key, and publishes its S3 port on the host's loopback for the
	// presigned uploads of clients.
	weed := service(t, p, "seaweedfs")
	var config string
	for _, c := range weed.Configs {
		if c.Source == "seaweedfs-s3" && c.Target == "/etc/seaweedfs/s3.json" {
			config = p.Configs[c.Source].Content
		}
	}
	if !slices.Contains(weed.Command, "-s3.config=/etc/seaweedfs/s3.json") ||
		!strings.Contains(config, `"accessKey": "mpkey"`) || !strings.Contains(config, `"secretKey": "mpsecret"`) {
		t.Errorf("seaweedfs: want -s3.config naming modelplane's key, got command %v configs %+v content %q", weed.Command, weed.Configs, config)
	}
	var identities struct {
		Identities []struct{ Name string } `json:"identities"`
	}
	if err := json.Unmarshal([]byte(config), &identities); err != nil || len(identities.Identities) != 1 {
		t.Errorf("seaweedfs s3.json: want JSON with one identity, got %v: %q", err, config)
	}
	if len(weed.Ports) != 1 || weed.Ports[0].HostIP != "127.0.0.1" || weed.Ports[0].Target != 8333 || weed.Ports[0].Published != "8333" {
		t.Errorf("seaweedfs ports: want 127.0.0.1:8333:8333, got %+v", weed.Ports)
	}

	// The bucket is made once SeaweedFS is up, under the same profile and by the same name.
	bucket := service(t, p, "seaweedfs-bucket")
	if !slices.Contains(bucket.Profiles, "s3") || bucket.Restart != "no" {
		t.Errorf("seaweedfs-bucket: want a one-shot of the s3 profile, got profiles %v restart %q", bucket.Profiles, bucket.Restart)
	}
	if got := bucket.DependsOn["seaweedfs"]; got.Condition != types.ServiceConditionHealthy {
		t.Errorf("seaweedfs-bucket depends_on seaweedfs: want healthy, got %+v", bucket.DependsOn)
	}
	if got := env(bucket, "BUCKET"); got != "modelplane" || !strings.Contains(strings.Join(bucket.Command, " "), "s3.bucket.create -name $BUCKET") {
		t.Errorf("seaweedfs-bucket: want s3.bucket.create of modelplane, got BUCKET %q command %v", got, bucket.Command)
	}
}
