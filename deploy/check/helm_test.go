package check

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"helm.sh/helm/v4/pkg/chart/common"
	"helm.sh/helm/v4/pkg/chart/common/util"
	"helm.sh/helm/v4/pkg/chart/v2/lint"
	"helm.sh/helm/v4/pkg/chart/v2/lint/support"
	"helm.sh/helm/v4/pkg/chart/v2/loader"
	"helm.sh/helm/v4/pkg/engine"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/applyconfigurations"
	"k8s.io/client-go/kubernetes/scheme"
)

var chartDir = filepath.Join(deployDir, "helm", "modelplane")

// kubeVersion is the oldest Kubernetes the chart says it runs on (Chart.yaml, kubeVersion).
var kubeVersion = common.KubeVersion{Version: "v1.27.0", Major: "1", Minor: "27"}

// minimal is what an install must be given: the database URL.
var minimal = map[string]any{"database": map[string]any{"url": "postgres://modelplane:pw@db:5432/modelplane?sslmode=require"}}

// rendered is the chart's manifests, each decoded strictly into its client-go type.
type rendered struct {
	objects []runtime.Object
}

// render renders the chart as `helm template` does and decodes every manifest with
// client-go's scheme in strict mode (an unknown or duplicate field is an error), then checks
// it against the schema of the built-in types that client-go carries (structured-merge-diff's,
// which is the API server's OpenAPI).
func render(t *testing.T, values map[string]any) rendered {
	t.Helper()
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatalf("loading the chart: %v", err)
	}
	caps := *common.DefaultCapabilities
	caps.KubeVersion = kubeVersion
	vals, err := util.ToRenderValues(ch, values, common.ReleaseOptions{Name: "mp", Namespace: "modelplane", IsInstall: true, Revision: 1}, &caps)
	if err != nil {
		t.Fatalf("values: %v", err)
	}
	files, err := engine.Render(ch, vals)
	if err != nil {
		t.Fatalf("rendering the chart: %v", err)
	}
	decoder := serializer.NewCodecFactory(scheme.Scheme, serializer.EnableStrict).UniversalDeserializer()
	schema := applyconfigurations.NewTypeConverter(scheme.Scheme)
	var out rendered
	names := slices.Sorted(maps.Keys(files))
	for _, name := range names {
		if !strings.HasSuffix(name, ".yaml") {
			continue
		}
		r := utilyaml.NewYAMLReader(bufio.NewReader(strings.NewReader(files[name])))
		for {
			doc, err := r.Read()
			if err != nil {
				break
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, gvk, err := decoder.Decode(doc, nil, nil)
			if err != nil {
				t.Fatalf("%s: not a valid Kubernetes object: %v\n%s", name, err, doc)
			}
			if _, err := schema.ObjectToTyped(obj); err != nil {
				t.Fatalf("%s (%s): against the Kubernetes schema: %v\n%s", name, gvk.Kind, err, doc)
			}
			out.objects = append(out.objects, obj)
		}
	}
	return out
}

func stripComments(doc []byte) []byte {
	var b bytes.Buffer
	for _, l := range bytes.Split(doc, []byte("\n")) {
		if !bytes.HasPrefix(bytes.TrimSpace(l), []byte("#")) {
			b.Write(l)
			b.WriteByte('\n')
		}
	}
	return b.Bytes()
}

func valuesFile(t *testing.T, name string) map[string]any {
	t.Helper()
	v, err := common.ReadValuesFile(filepath.Join(chartDir, name))
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func find[T runtime.Object](r rendered, name string) (T, bool) {
	for _, o := range r.objects {
		if v, ok := o.(T); ok {
			if m, ok := any(v).(interface{ GetName() string }); ok && m.GetName() == name {
				return v, true
			}
		}
	}
	var zero T
	return zero, false
}

func all[T runtime.Object](r rendered) []T {
	var out []T
	for _, o := range r.objects {
		if v, ok := o.(T); ok {
			out = append(out, v)
		}
	}
	return out
}

func TestChart_LintsClean(t *testing.T) {
	for _, values := range []map[string]any{minimal, valuesFile(t, "ci/all-on-values.yaml")} {
		l := lint.RunAll(chartDir, values, "modelplane", lint.WithKubeVersion(&kubeVersion))
		for _, m := range l.Messages {
			if m.Severity >= support.WarningSev {
				t.Errorf("helm lint: %s", m)
			}
		}
	}
}

func TestChart_RefusesAnInstallWithoutADatabase(t *testing.T) {
	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := util.ToRenderValues(ch, nil, common.ReleaseOptions{Name: "mp", Namespace: "modelplane"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Render(ch, vals); err == nil || !strings.Contains(err.Error(), "database.url") {
		t.Fatalf("no database: want a render error naming database.url, got %v", err)
	}
}

func TestChart_DefaultsRunTheControlPlaneAndAGPUAgent(t *testing.T) {
	r := render(t, minimal)
	checkWorkloads(t, r, "mp-modelplane", true)

	ds, ok := find[*appsv1.DaemonSet](r, "mp-modelplane-agent")
	if !ok {
		t.Fatal("want the agent DaemonSet")
	}
	spec := ds.Spec.Template.Spec
	if spec.RuntimeClassName == nil || *spec.RuntimeClassName != "nvidia" {
		t.Errorf("agent runtimeClassName: want nvidia, got %v", spec.RuntimeClassName)
	}
	if spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("agent nodeSelector: want GPU nodes, got %v", spec.NodeSelector)
	}
	if !spec.HostNetwork {
		t.Error("agent: want the host's network, where the gateway reaches its replicas")
	}
	c := spec.Containers[0]
	if sc := c.SecurityContext; sc == nil || sc.RunAsUser == nil || *sc.RunAsUser != 0 {
		t.Errorf("agent: want it to run as root (replica users), got %+v", c.SecurityContext)
	}
	if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
		t.Errorf("agent liveness: want /healthz, got %+v", c.LivenessProbe)
	}
	for k, v := range map[string]string{
		"MODELPLANE_NODE_TOKEN_FILE": "/run/modelplane/node-token", "MODELPLANE_REQUIRE_ISOLATION": "true",
		"MODELPLANE_API_URL": "http://mp-modelplane-api.modelplane.svc:8080", "MODELPLANE_AGENT_ADVERTISE_URL": "http://$(HOST_IP):7070",
		// Replicas answer on the node's IP, so that a gateway on any node reaches them.
		"MODELPLANE_AGENT_REPLICA_HOST": "$(HOST_IP)",
	} {
		if got := envValue(c, k); got != v {
			t.Errorf("agent %s: want %q, got %q", k, v, got)
		}
	}
	if _, ok := find[*networkingv1.Ingress](r, "mp-modelplane-gateway"); ok {
		t.Error("ingress: want none unless gateway.ingress.enabled")
	}

	// Secrets: the database URL, and the node token and secrets key the chart generates.
	db, ok := find[*corev1.Secret](r, "mp-modelplane-database")
	if !ok || db.StringData["database-url"] != minimal["database"].(map[string]any)["url"] {
		t.Errorf("database secret: want database-url from the values, got %+v", db)
	}
	sec, ok := find[*corev1.Secret](r, "mp-modelplane-secrets")
	if !ok {
		t.Fatal("want the secrets Secret")
	}
	if len(sec.Data["node-token"]) < 32 {
		t.Errorf("node-token: want a generated token of 32 characters or more, got %q", sec.Data["node-token"])
	}
	if key := sec.Data["secrets-key"]; len(key) != 44 {
		t.Errorf("secrets-key: want 32 bytes in base64 (44 characters), got %d characters", len(key))
	}

	gw, _ := find[*appsv1.Deployment](r, "mp-modelplane-gateway")
	if !gw.Spec.Template.Spec.HostNetwork || gw.Spec.Template.Spec.NodeSelector["nvidia.com/gpu.present"] != "true" {
		t.Errorf("gateway: want it in the host network of the GPU nodes (replicas listen on loopback), got hostNetwork %v nodeSelector %v",
			gw.Spec.Template.Spec.HostNetwork, gw.Spec.Template.Spec.NodeSelector)
	}
}

func TestChart_EveryOptionOnRendersValidManifests(t *testing.T) {
	r := render(t, valuesFile(t, "ci/all-on-values.yaml"))
	checkWorkloads(t, r, "mp-modelplane", true)
	for _, s := range all[*corev1.Secret](r) {
		t.Errorf("secret %s: want none rendered when existing secrets are named", s.Name)
	}
	if _, ok := find[*corev1.PersistentVolumeClaim](r, "mp-modelplane-blobs"); ok {
		t.Error("blobs: want no claim when blobs.existingClaim is named")
	}
	ing, ok := find[*networkingv1.Ingress](r, "mp-modelplane-gateway")
	if !ok {
		t.Fatal("want the gateway's Ingress")
	}
	if ing.Spec.IngressClassName == nil || *ing.Spec.IngressClassName != "nginx" || len(ing.Spec.Rules) != 2 || len(ing.Spec.TLS) != 1 {
		t.Errorf("ingress: want class nginx, 2 rules and TLS, got %+v", ing.Spec)
	}
	for _, rule := range ing.Spec.Rules {
		b := rule.HTTP.Paths[0].Backend.Service
		if b.Name != "mp-modelplane-gateway" || b.Port.Name != "http" {
			t.Errorf("ingress rule %s: want the gateway service's http port, got %+v", rule.Host, b)
		}
	}
	gw, _ := find[*appsv1.Deployment](r, "mp-modelplane-gateway")
	if gw.Spec.Template.Spec.HostNetwork {
		t.Error("gateway with colocateWithAgent false: want the pod network")
	}
	api, _ := find[*appsv1.Deployment](r, "mp-modelplane-api")
	if got := envValue(api.Spec.Template.Spec.Containers[0], "OTEL_EXPORTER_OTLP_ENDPOINT"); got == "" {
		t.Error("api: want extraEnv's OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	if ref := envFrom(api.Spec.Template.Spec.Containers[0], "DATABASE_URL"); ref == nil || ref.Name != "modelplane-db" {
		t.Errorf("api DATABASE_URL: want it from the existing secret modelplane-db, got %+v", ref)
	}
	pdb, _ := find[*policyv1.PodDisruptionBudget](r, "mp-modelplane-api")
	if pdb.Spec.MinAvailable == nil || pdb.Spec.MinAvailable.IntValue() != 2 {
		t.Errorf("api PDB: want minAvailable 2, got %+v", pdb.Spec)
	}
}

// checkWorkloads holds what every rendering must have: the three Deployments with probes on
// /readyz, resource requests, non-root containers, a PDB each, Services whose selectors find
// their pods, and the environment modelplane reads spelt as README.md spells it.
func checkWorkloads(t *testing.T, r rendered, prefix string, agent bool) {
	t.Helper()
	documented := documentedEnv(t)
	deployments := map[string]*appsv1.Deployment{}
	for _, name := range []string{"api", "gateway", "worker"} {
		d, ok := find[*appsv1.Deployment](r, prefix+"-"+name)
		if !ok {
			t.Fatalf("want the %s Deployment", name)
		}
		deployments[name] = d
		spec := d.Spec.Template.Spec
		if len(spec.Containers) != 1 {
			t.Fatalf("%s: want one container, got %d", name, len(spec.Containers))
		}
		c := spec.Containers[0]
		if len(c.Args) == 0 || c.Args[0] != name {
			t.Errorf("%s: want args [%s], got %v", name, name, c.Args)
		}
		if c.ReadinessProbe == nil || c.ReadinessProbe.HTTPGet == nil || c.ReadinessProbe.HTTPGet.Path != "/readyz" {
			t.Errorf("%s readiness: want GET /readyz, got %+v", name, c.ReadinessProbe)
		} else if !hasPort(c, c.ReadinessProbe.HTTPGet.Port.String()) {
			t.Errorf("%s readiness: port %s is none of the container's", name, c.ReadinessProbe.HTTPGet.Port.String())
		}
		if c.LivenessProbe == nil || c.LivenessProbe.HTTPGet == nil || c.LivenessProbe.HTTPGet.Path != "/healthz" {
			t.Errorf("%s liveness: want GET /healthz, got %+v", name, c.LivenessProbe)
		}
		if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() {
			t.Errorf("%s: want CPU and memory requests, got %v", name, c.Resources.Requests)
		}
		psc := spec.SecurityContext
		if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || c.SecurityContext == nil ||
			c.SecurityContext.ReadOnlyRootFilesystem == nil || !*c.SecurityContext.ReadOnlyRootFilesystem {
			t.Errorf("%s: want non-root with a read-only root filesystem, got pod %+v container %+v", name, psc, c.SecurityContext)
		}
		if ref := envFrom(c, "DATABASE_URL"); ref == nil || ref.Key != "database-url" {
			t.Errorf("%s DATABASE_URL: want it from a secret's database-url, got %+v", name, ref)
		}
		for _, e := range c.Env {
			if ownEnv(e.Name) && !documented[e.Name] {
				t.Errorf("%s sets %s, which README.md does not name", name, e.Name)
			}
		}
		pdb, ok := find[*policyv1.PodDisruptionBudget](r, prefix+"-"+name)
		if !ok {
			t.Errorf("%s: want a PodDisruptionBudget", name)
		} else if sel, err := metaSelector(pdb.Spec.Selector); err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s PDB: its selector %v does not match the pods %v", name, pdb.Spec.Selector, d.Spec.Template.Labels)
		}
		if sel, err := metaSelector(d.Spec.Selector); err != nil || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("%s: its selector does not match its own pods", name)
		}
	}
	for _, name := range []string{"api", "worker"} {
		c := deployments[name].Spec.Template.Spec.Containers[0]
		for k, v := range map[string]string{"MODELPLANE_NODE_TOKEN_FILE": "/run/modelplane/node-token", "MODELPLANE_SECRETS_KEY_FILE": "/run/modelplane/secrets-key"} {
			if got := envValue(c, k); got != v {
				t.Errorf("%s %s: want %q, got %q", name, k, v, got)
			}
		}
		if !mounted(deployments[name].Spec.Template.Spec, c, "/run/modelplane", "secret") {
			t.Errorf("%s: want the secrets mounted at /run/modelplane", name)
		}
		if !mounted(deployments[name].Spec.Template.Spec, c, "/var/lib/modelplane/blobs", "pvc") {
			t.Errorf("%s: want the shared blob volume at /var/lib/modelplane/blobs", name)
		}
	}
	for _, name := range []string{"api", "gateway"} {
		svc, ok := find[*corev1.Service](r, prefix+"-"+name)
		if !ok {
			t.Errorf("want the %s Service", name)
			continue
		}
		if !labels.SelectorFromSet(svc.Spec.Selector).Matches(labels.Set(deployments[name].Spec.Template.Labels)) {
			t.Errorf("%s Service: its selector %v does not match the pods", name, svc.Spec.Selector)
		}
		for _, p := range svc.Spec.Ports {
			if !hasPort(deployments[name].Spec.Template.Spec.Containers[0], p.TargetPort.String()) {
				t.Errorf("%s Service: targetPort %s is none of the container's", name, p.TargetPort.String())
			}
		}
	}
	if agent {
		if _, ok := find[*appsv1.DaemonSet](r, prefix+"-agent"); !ok {
			t.Error("want the agent DaemonSet")
		}
	}
	// Every secret a pod names is rendered, or named by the values as the operator's own.
	var kinds []string
	for _, o := range r.objects {
		kinds = append(kinds, fmt.Sprintf("%T", o))
	}
	sort.Strings(kinds)
	t.Logf("rendered: %s", strings.Join(kinds, " "))
}

func hasPort(c corev1.Container, port string) bool {
	for _, p := range c.Ports {
		if p.Name == port || fmt.Sprint(p.ContainerPort) == port {
			return true
		}
	}
	return false
}

func envValue(c corev1.Container, name string) string {
	for _, e := range c.Env {
		if e.Name == name {
			return e.Value
		}
	}
	return ""
}

func envFrom(c corev1.Container, name string) *corev1.SecretKeySelector {
	for _, e := range c.Env {
		if e.Name == name && e.ValueFrom != nil {
			return e.ValueFrom.SecretKeyRef
		}
	}
	return nil
}

func mounted(spec corev1.PodSpec, c corev1.Container, path, kind string) bool {
	for _, m := range c.VolumeMounts {
		if m.MountPath != path {
			continue
		}
		for _, v := range spec.Volumes {
			if v.Name == m.Name && ((kind == "secret" && v.Secret != nil) || (kind == "pvc" && v.PersistentVolumeClaim != nil)) {
				return true
			}
		}
	}
	return false
}

func metaSelector(s *metav1.LabelSelector) (labels.Selector, error) {
	return metav1.LabelSelectorAsSelector(s)
}

func TestChart_ReplicaHostLoopbackKeepsReplicasOnTheNodeAndAnythingElseIsRefused(t *testing.T) {
	r := render(t, map[string]any{"database": minimal["database"], "agent": map[string]any{"replicaHost": "loopback"}})
	ds, _ := find[*appsv1.DaemonSet](r, "mp-modelplane-agent")
	if got := envValue(ds.Spec.Template.Spec.Containers[0], "MODELPLANE_AGENT_REPLICA_HOST"); got != "" {
		t.Errorf("loopback: want no MODELPLANE_AGENT_REPLICA_HOST (the agent's default, 127.0.0.1), got %q", got)
	}

	ch, err := loader.Load(chartDir)
	if err != nil {
		t.Fatal(err)
	}
	vals, err := util.ToRenderValues(ch, map[string]any{"database": minimal["database"], "agent": map[string]any{"replicaHost": "10.0.0.1"}},
		common.ReleaseOptions{Name: "mp", Namespace: "modelplane"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := engine.Render(ch, vals); err == nil || !strings.Contains(err.Error(), "agent.replicaHost") {
		t.Fatalf("replicaHost 10.0.0.1: want a render error naming agent.replicaHost, got %v", err)
	}
}
