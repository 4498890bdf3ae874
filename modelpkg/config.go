// Package modelpkg reads, checks and writes model packages: a directory, a gzip'd tar on the
// wire, with config.yaml at its root (see API.md, "Model package").
//
// ParseConfig turns config.yaml into a Config with defaults applied and every rule checked;
// Extract unpacks an uploaded archive safely and verifies its checksum; Pack builds the
// archive that Extract accepts, byte for byte the same for the same directory.
package modelpkg

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/modelplane/modelplane"
)

// ConfigFile is the name of the package's configuration, at the root of the package.
const ConfigFile = "config.yaml"

// Runtimes a package can ask for.
const (
	// RuntimePython runs model/model.py in the server that modelplane ships (runtime/python).
	RuntimePython = "python"
	// RuntimeProcess runs the package's own command in the unpacked package directory.
	RuntimeProcess = "process"
	// RuntimeDocker runs a container image.
	RuntimeDocker = "docker"
)

// Default paths of the model server's endpoints, per runtime.
const (
	PythonHealthPath  = "/v1/models/model"
	PythonPredictPath = "/v1/models/model:predict"
	DefaultHealthPath = "/health"
	// DefaultPredictPath is the predict path of the process and docker runtimes.
	DefaultPredictPath = "/predict"
)

// Limits on what a package may ask for.
const (
	// MaxGPUCount is the most GPUs one replica may ask for: 16 covers the largest hosts
	// (HGX with 8, plus headroom) while catching typos such as "H100:80".
	MaxGPUCount = 16
	// maxConfigBytes bounds config.yaml, which is read into memory and stored with the
	// deployment; real configs are a few KiB.
	maxConfigBytes = 1 << 20
)

// Resources is what one replica of the model needs.
type Resources struct {
	// Accelerator is the text as written, "TYPE" or "TYPE:COUNT" ("H100:1", "A100:2").
	Accelerator string `json:"accelerator,omitempty"`
	// GPURequest is what placement and the node agent match against GPUs, resolved from
	// accelerator, gpu_count, gpu_memory_gib and mig_profile: GPUType is the accelerator's
	// TYPE upper-cased ("H100"), GPUCount is 1 for a MIG slice. Its keys sit in resources
	// beside accelerator, cpu and memory.
	modelplane.GPURequest
	// CPU is a Kubernetes-style quantity ("1", "0.5", "500m"); empty means unspecified.
	CPU string `json:"cpu,omitempty"`
	// Memory is a Kubernetes-style quantity ("2Gi", "512Mi", "1G"); empty means unspecified.
	Memory string `json:"memory,omitempty"`
}

// Config is a parsed, validated config.yaml with defaults applied. Its JSON form uses the
// config.yaml key names; JSON (the method) also keeps the keys Config does not know.
type Config struct {
	// ModelName is the model's display name: free text, 1-255 printable characters.
	ModelName   string `json:"model_name"`
	Description string `json:"description,omitempty"`
	// Runtime is RuntimePython, RuntimeProcess or RuntimeDocker, inferred from the package
	// (see inferRuntime). It is not a config.yaml key: `runtime:` is Truss's RuntimeSettings.
	Runtime string `json:"-"`
	// RuntimeSettings is Truss's `runtime:` mapping.
	RuntimeSettings RuntimeSettings `json:"runtime"`
	// Command is the argv of the process runtime, run in the unpacked package directory.
	Command []string `json:"command,omitempty"`
	// Image is the container image of the docker runtime.
	Image     string    `json:"image,omitempty"`
	Resources Resources `json:"resources"`
	// HealthPath is probed with GET until it answers 200; PredictPath receives predictions.
	HealthPath           string            `json:"health_path"`
	PredictPath          string            `json:"predict_path"`
	EnvironmentVariables map[string]string `json:"environment_variables,omitempty"`
	// Secrets are names; the values are set per workspace and given to the replica at start.
	Secrets       []string       `json:"secrets,omitempty"`
	ModelMetadata map[string]any `json:"model_metadata,omitempty"`
	HotReload     bool           `json:"hot_reload"`

	// PythonVersion is Truss's "py311": the interpreter of the python runtime and of the
	// requirements' environment. Empty runs the node's python3.
	PythonVersion string `json:"python_version,omitempty"`
	// Requirements are pip requirement lines; RequirementsFile names a requirements file in
	// the package instead. They are installed while the deployment is BUILDING.
	Requirements     []string `json:"requirements,omitempty"`
	RequirementsFile string   `json:"requirements_file,omitempty"`
	SystemPackages   []string `json:"system_packages,omitempty"`
	BuildCommands    []string `json:"build_commands,omitempty"`
	// DockerServer is a server of the package's own, instead of a Model class.
	DockerServer *DockerServer `json:"docker_server,omitempty"`
	BaseImage    *BaseImage    `json:"base_image,omitempty"`

	// The package layout of a Truss Model class, with Truss's defaults.
	ModelModuleDir      string   `json:"model_module_dir"`
	ModelClassFilename  string   `json:"model_class_filename"`
	ModelClassName      string   `json:"model_class_name"`
	DataDir             string   `json:"data_dir"`
	BundledPackagesDir  string   `json:"bundled_packages_dir"`
	ExternalPackageDirs []string `json:"external_package_dirs,omitempty"`

	// Raw is the config.yaml text as uploaded, unknown keys included. It is left out of the
	// JSON form, which is what a model sees as its config.
	Raw string `json:"-"`
}

// FieldError is a config.yaml that breaks a rule. Field is the key's path
// ("resources.accelerator"); it is empty only when the file as a whole is wrong (not YAML,
// not a mapping).
type FieldError struct {
	Field   string
	Message string
	// Unsupported marks a config that is valid Truss but cannot run the way it asks
	// (system_packages on the python runtime): the API answers 422 rather than 400.
	Unsupported bool
}

func (e *FieldError) Error() string {
	if e.Field == "" {
		return ConfigFile + ": " + e.Message
	}
	return ConfigFile + ": " + e.Field + ": " + e.Message
}

func fieldErr(field, format string, args ...any) *FieldError {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// MaxSecretName is the longest secret name, as Truss allows.
const MaxSecretName = 253

var secretNameRE = regexp.MustCompile(`^[A-Za-z0-9._-]+$`)

// ValidateSecretName checks a secret's name as Truss does: 1-253 of A-Z a-z 0-9 . _ -, and
// neither "." nor "..". Such a name is also a safe file name under a secrets directory.
func ValidateSecretName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("a secret name must not be empty")
	case len(name) > MaxSecretName:
		return fmt.Errorf("secret name is %d characters; at most %d", len(name), MaxSecretName)
	case !secretNameRE.MatchString(name):
		return fmt.Errorf("secret name %q: only A-Z a-z 0-9 . _ - are allowed", name)
	case name == "." || name == "..":
		return fmt.Errorf("secret name must not be %q", name)
	}
	return nil
}

var (
	gpuTypeRE     = regexp.MustCompile(`^[A-Za-z0-9]+(_[A-Za-z0-9]+)*$`)
	migProfileRE  = regexp.MustCompile(`^[0-9]+g\.[0-9]+gb$`)
	envNameRE     = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	cpuRE         = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?|[0-9]+m)$`)
	memoryRE      = regexp.MustCompile(`^([0-9]+(\.[0-9]+)?)(Ki|Mi|Gi|Ti|Pi|Ei|k|K|M|G|T|P|E)?$`)
	reservedEnvRE = regexp.MustCompile(`^(PORT|CUDA_VISIBLE_DEVICES|NVIDIA_VISIBLE_DEVICES|MODELPLANE_.*)$`)
)

// ReadConfig reads and parses dir/config.yaml, for a package that is already a directory
// (the CLI before Pack, the agent after Extract).
func ReadConfig(dir string) (Config, error) {
	text, err := os.ReadFile(filepath.Join(dir, ConfigFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return Config{}, fmt.Errorf("%s: %w", dir, ErrNoConfig)
		}
		return Config{}, err
	}
	return ParseConfig(text)
}

// ParseConfig parses config.yaml, applies the defaults of its runtime and checks every
// rule. Unknown keys are kept in Raw and otherwise ignored. Any problem with the text is a
// *FieldError naming the key; the first one found is returned.
func ParseConfig(text []byte) (Config, error) {
	if len(text) > maxConfigBytes {
		return Config{}, fieldErr("", "larger than %d bytes", maxConfigBytes)
	}
	cfg := Config{Raw: string(text)}
	var doc yaml.Node
	if err := yaml.Unmarshal(text, &doc); err != nil {
		return Config{}, fieldErr("", "not valid YAML: %v", err)
	}
	top, err := topMapping(&doc)
	if err != nil {
		return Config{}, err
	}
	if err := storable(top, "", 1); err != nil {
		return Config{}, err
	}
	seen, err := decodeTop(top, &cfg)
	if err != nil {
		return Config{}, err
	}
	applyDefaults(&cfg)
	if err := validate(&cfg, seen); err != nil {
		return Config{}, err
	}
	// The model is given its config as JSON (Config.JSON); what YAML can say and JSON cannot
	// (aliases that expand without bound, say) is refused now rather than when it starts.
	if _, err := cfg.JSON(); err != nil {
		return Config{}, fieldErr("", "cannot be written as JSON: %v", err)
	}
	return cfg, nil
}

// ConfigFromJSON parses a config given as a JSON object (a create request's
// source.deployment.config) by the rules of config.yaml. Its Raw is the object written out
// as YAML: the config.yaml text of a deployment that runs it.
func ConfigFromJSON(obj []byte) (Config, error) {
	if len(obj) > maxConfigBytes {
		return Config{}, fieldErr("", "larger than %d bytes", maxConfigBytes)
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(obj, &doc); err != nil {
		return Config{}, fieldErr("", "not a JSON object: %v", err)
	}
	if doc.Kind != yaml.DocumentNode || len(doc.Content) != 1 || doc.Content[0].Kind != yaml.MappingNode {
		return Config{}, fieldErr("", "must be an object of keys to values")
	}
	plainStyle(&doc)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&doc); err != nil {
		return Config{}, fieldErr("", "%v", err)
	}
	if err := enc.Close(); err != nil {
		return Config{}, fieldErr("", "%v", err)
	}
	return ParseConfig(buf.Bytes())
}

// plainStyle drops the flow style and quotes JSON is written in, so that the YAML encoder
// writes block style and quotes only what needs them.
func plainStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		plainStyle(c)
	}
}

// SameAs reports whether two configs run a model the same way: every key Config knows is
// equal once defaults are applied. Keys it does not know, comments and layout do not count.
func (c Config) SameAs(o Config) bool {
	a, errA := json.Marshal(c)
	b, errB := json.Marshal(o)
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// topMapping returns the document's top-level mapping; an empty file is an empty mapping,
// so that its error is the missing model_name rather than a syntax complaint.
func topMapping(doc *yaml.Node) (*yaml.Node, error) {
	if doc.Kind == 0 || len(doc.Content) == 0 {
		return &yaml.Node{Kind: yaml.MappingNode}, nil
	}
	top := doc.Content[0]
	if top.Kind == yaml.ScalarNode && top.Tag == "!!null" {
		return &yaml.Node{Kind: yaml.MappingNode}, nil
	}
	if top.Kind != yaml.MappingNode {
		return nil, fieldErr("", "must be a mapping of keys to values")
	}
	return top, nil
}

// presence records which optional keys were written, where a zero value and an absent key
// mean different things (gpu_count: 0 next to an accelerator).
type presence struct {
	gpuCount bool
}

// decodeTop walks the top-level mapping in document order and decodes the keys it knows.
// Walking nodes rather than unmarshalling into a struct lets every type error name its key.
func decodeTop(top *yaml.Node, cfg *Config) (presence, error) {
	var seen presence
	var liveReload bool
	err := eachKey(top, "", func(key, _ string, v *yaml.Node) (err error) {
		switch key {
		case "model_name":
			cfg.ModelName, err = scalarString(key, v)
		case "description":
			cfg.Description, err = scalarString(key, v)
		case "runtime":
			err = decodeRuntimeSettings(v, &cfg.RuntimeSettings, &cfg.Runtime)
		case "python_version":
			cfg.PythonVersion, err = scalarString(key, v)
		case "requirements":
			cfg.Requirements, err = stringList(key, v)
		case "requirements_file":
			cfg.RequirementsFile, err = scalarString(key, v)
		case "system_packages":
			cfg.SystemPackages, err = stringList(key, v)
		case "build_commands":
			cfg.BuildCommands, err = stringList(key, v)
		case "docker_server":
			err = decodeDockerServer(v, &cfg.DockerServer)
		case "base_image":
			err = decodeBaseImage(v, &cfg.BaseImage)
		case "model_module_dir":
			cfg.ModelModuleDir, err = scalarString(key, v)
		case "model_class_filename":
			cfg.ModelClassFilename, err = scalarString(key, v)
		case "model_class_name":
			cfg.ModelClassName, err = scalarString(key, v)
		case "data_dir":
			cfg.DataDir, err = scalarString(key, v)
		case "bundled_packages_dir":
			cfg.BundledPackagesDir, err = scalarString(key, v)
		case "external_package_dirs":
			cfg.ExternalPackageDirs, err = stringList(key, v)
		case "live_reload":
			liveReload, err = boolean(key, v)
		case "command":
			cfg.Command, err = stringList(key, v)
		case "image":
			cfg.Image, err = scalarString(key, v)
		case "resources":
			seen, err = decodeResources(v, &cfg.Resources)
		case "health_path":
			cfg.HealthPath, err = scalarString(key, v)
		case "predict_path":
			cfg.PredictPath, err = scalarString(key, v)
		case "environment_variables":
			cfg.EnvironmentVariables, err = stringMap(key, v)
		case "secrets":
			cfg.Secrets, err = secretNames(key, v)
		case "model_metadata":
			cfg.ModelMetadata, err = anyMap(key, v)
		case "hot_reload":
			var hot bool
			hot, err = boolean(key, v)
			cfg.HotReload = cfg.HotReload || hot
		}
		return err
	})
	// Truss's live_reload and modelplane's hot_reload mean the same.
	cfg.HotReload = cfg.HotReload || liveReload
	return seen, err
}

func decodeResources(v *yaml.Node, r *Resources) (presence, error) {
	var seen presence
	if isNull(v) {
		return seen, nil
	}
	if v.Kind != yaml.MappingNode {
		return seen, fieldErr("resources", "must be a mapping")
	}
	err := eachKey(v, "resources.", func(key, field string, val *yaml.Node) (err error) {
		switch key {
		case "accelerator":
			r.Accelerator, err = scalarString(field, val)
		case "gpu_count":
			seen.gpuCount = !isNull(val)
			r.GPUCount, err = integer(field, val)
		case "gpu_memory_gib":
			r.GPUMemoryGiB, err = integer(field, val)
		case "mig_profile":
			r.MIGProfile, err = scalarString(field, val)
		case "cpu":
			r.CPU, err = scalarString(field, val)
		case "memory":
			r.Memory, err = scalarString(field, val)
		}
		return err
	})
	return seen, err
}

// eachKey calls fn for each key of a mapping in document order, with the key's field name
// (prefix + key) for error messages; a key given twice is an error.
func eachKey(m *yaml.Node, prefix string, fn func(key, field string, v *yaml.Node) error) error {
	keys := map[string]bool{}
	for i := 0; i+1 < len(m.Content); i += 2 {
		key := m.Content[i].Value
		if keys[key] {
			return fieldErr(prefix+key, "given more than once")
		}
		keys[key] = true
		if err := fn(key, prefix+key, m.Content[i+1]); err != nil {
			return err
		}
	}
	return nil
}

// MaxDepth bounds how deeply config.yaml nests (the top-level mapping is level 1): a
// config is kept in PostgreSQL, which refuses deep enough JSON.
const MaxDepth = 64

// storable refuses what PostgreSQL cannot keep of a config, naming the key: a key or string
// value holding NUL (YAML's "\0"), which text and jsonb cannot hold, and nesting deeper than
// MaxDepth; and what JSON cannot say: .nan and .inf, a key given twice in one mapping, and a
// list or mapping as a key.
func storable(n *yaml.Node, field string, depth int) error {
	if n.Kind == yaml.AliasNode {
		return nil // the anchored node is checked where it stands
	}
	if n.Kind == yaml.ScalarNode {
		if strings.IndexByte(n.Value, 0) >= 0 {
			return fieldErr(field, "must not contain NUL (\\0)")
		}
		if n.Tag == "!!float" {
			var f float64
			if n.Decode(&f) == nil && (math.IsNaN(f) || math.IsInf(f, 0)) {
				return fieldErr(field, "must be a finite number: JSON has no %s", n.Value)
			}
		}
		return nil
	}
	if depth > MaxDepth {
		return fieldErr(field, "nested deeper than %d levels", MaxDepth)
	}
	switch n.Kind {
	case yaml.MappingNode:
		keys := map[string]bool{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k := n.Content[i]
			if strings.IndexByte(k.Value, 0) >= 0 {
				return fieldErr(field, "a key must not contain NUL (\\0)")
			}
			sub := strings.TrimPrefix(field+"."+k.Value, ".")
			if k.Kind != yaml.ScalarNode && (k.Kind != yaml.AliasNode || k.Alias == nil || k.Alias.Kind != yaml.ScalarNode) {
				return fieldErr(field, "a key must be a string or a number, not a list or a mapping")
			}
			if k.Kind == yaml.ScalarNode && k.Tag != "!!merge" {
				if keys[k.Value] {
					return fieldErr(sub, "given more than once")
				}
				keys[k.Value] = true
			}
			if err := storable(n.Content[i+1], sub, depth+1); err != nil {
				return err
			}
		}
	case yaml.SequenceNode:
		for i, item := range n.Content {
			if err := storable(item, fmt.Sprintf("%s[%d]", field, i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

func isNull(v *yaml.Node) bool {
	return v.Kind == yaml.ScalarNode && v.Tag == "!!null"
}

// scalarString accepts any scalar as text, so that `cpu: 1` and `cpu: "1"` mean the same;
// null is the empty string, as if the key were absent.
func scalarString(field string, v *yaml.Node) (string, error) {
	if isNull(v) {
		return "", nil
	}
	if v.Kind != yaml.ScalarNode {
		return "", fieldErr(field, "must be a string")
	}
	return v.Value, nil
}

func stringList(field string, v *yaml.Node) ([]string, error) {
	if isNull(v) {
		return nil, nil
	}
	if v.Kind != yaml.SequenceNode {
		return nil, fieldErr(field, "must be a list of strings")
	}
	out := make([]string, 0, len(v.Content))
	for i, item := range v.Content {
		if item.Kind != yaml.ScalarNode || isNull(item) {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", field, i), "must be a string")
		}
		out = append(out, item.Value)
	}
	return out, nil
}

// stringMap decodes a mapping of names to scalars; numbers and booleans become their text,
// as environment variables are text.
func stringMap(field string, v *yaml.Node) (map[string]string, error) {
	if isNull(v) {
		return nil, nil
	}
	if v.Kind != yaml.MappingNode {
		return nil, fieldErr(field, "must be a mapping of names to strings")
	}
	out := make(map[string]string, len(v.Content)/2)
	for i := 0; i+1 < len(v.Content); i += 2 {
		k, val := v.Content[i], v.Content[i+1]
		sub := field + "." + k.Value
		if _, dup := out[k.Value]; dup {
			return nil, fieldErr(sub, "given more than once")
		}
		if isNull(val) {
			out[k.Value] = ""
			continue
		}
		if val.Kind != yaml.ScalarNode {
			return nil, fieldErr(sub, "must be a string")
		}
		out[k.Value] = val.Value
	}
	return out, nil
}

// secretNames accepts the list form of API.md and, for Truss configs, a mapping whose keys
// are the names (Truss writes `secrets: {hf_token: null}`).
func secretNames(field string, v *yaml.Node) ([]string, error) {
	if v.Kind == yaml.MappingNode {
		names := make([]string, 0, len(v.Content)/2)
		for i := 0; i+1 < len(v.Content); i += 2 {
			names = append(names, v.Content[i].Value)
		}
		return names, nil
	}
	names, err := stringList(field, v)
	if err != nil {
		return nil, fieldErr(field, "must be a list of names")
	}
	return names, nil
}

func anyMap(field string, v *yaml.Node) (map[string]any, error) {
	if isNull(v) {
		return nil, nil
	}
	if v.Kind != yaml.MappingNode {
		return nil, fieldErr(field, "must be a mapping")
	}
	var raw any
	if err := v.Decode(&raw); err != nil {
		return nil, fieldErr(field, "%v", err)
	}
	m, ok := jsonable(raw).(map[string]any)
	if !ok {
		return nil, fieldErr(field, "must be a mapping")
	}
	return m, nil
}

func boolean(field string, v *yaml.Node) (bool, error) {
	if isNull(v) {
		return false, nil
	}
	var b bool
	if v.Kind != yaml.ScalarNode || v.Tag != "!!bool" || v.Decode(&b) != nil {
		return false, fieldErr(field, "must be true or false")
	}
	return b, nil
}

func integer(field string, v *yaml.Node) (int, error) {
	if isNull(v) {
		return 0, nil
	}
	if v.Kind != yaml.ScalarNode {
		return 0, fieldErr(field, "must be an integer")
	}
	n, err := strconv.Atoi(strings.TrimSpace(v.Value))
	if err != nil {
		return 0, fieldErr(field, "must be an integer, not %q", v.Value)
	}
	return n, nil
}

// jsonable converts what yaml.v3 decodes into values encoding/json can write: mappings
// with non-string keys (`1: x`) become string-keyed.
func jsonable(v any) any {
	switch t := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			out[k] = jsonable(val)
		}
		return out
	case map[any]any:
		out := make(map[string]any, len(t))
		for k, val := range t {
			out[fmt.Sprint(k)] = jsonable(val)
		}
		return out
	case []any:
		out := make([]any, len(t))
		for i, val := range t {
			out[i] = jsonable(val)
		}
		return out
	default:
		return v
	}
}

func applyDefaults(cfg *Config) {
	if cfg.Runtime == "" {
		cfg.Runtime = inferRuntime(cfg)
	}
	applyTrussDefaults(cfg)
	health, predict := DefaultHealthPath, DefaultPredictPath
	if cfg.Runtime == RuntimePython {
		health, predict = PythonHealthPath, PythonPredictPath
	}
	if cfg.HealthPath == "" {
		cfg.HealthPath = health
	}
	if cfg.PredictPath == "" {
		cfg.PredictPath = predict
	}
}

// resolveGPUs fills GPUType and GPUCount from the accelerator. An accelerator without a
// count takes gpu_count's when given ("accelerator: A100" with "gpu_count: 2"), 1 otherwise.
func resolveGPUs(r *Resources, seen presence) error {
	if r.GPUCount < 0 || r.GPUCount > MaxGPUCount {
		return fieldErr("resources.gpu_count", "must be between 0 and %d, not %d", MaxGPUCount, r.GPUCount)
	}
	if r.Accelerator != "" {
		typ, countText, hasCount := strings.Cut(r.Accelerator, ":")
		if !gpuTypeRE.MatchString(typ) {
			return fieldErr("resources.accelerator", "must be TYPE or TYPE:COUNT such as H100 or A100:2, not %q", r.Accelerator)
		}
		count := 1
		if hasCount {
			n, err := strconv.Atoi(countText)
			if err != nil || n < 1 || n > MaxGPUCount {
				return fieldErr("resources.accelerator", "COUNT in %q must be between 1 and %d", r.Accelerator, MaxGPUCount)
			}
			count = n
			if seen.gpuCount && r.GPUCount != n {
				return fieldErr("resources.gpu_count", "is %d but accelerator %q asks for %d", r.GPUCount, r.Accelerator, n)
			}
		} else if seen.gpuCount {
			if r.GPUCount == 0 {
				return fieldErr("resources.gpu_count", "is 0 but accelerator %q asks for a GPU", r.Accelerator)
			}
			count = r.GPUCount
		}
		r.GPUType = strings.ToUpper(typ)
		r.GPUCount = count
	}
	if r.MIGProfile != "" {
		if !migProfileRE.MatchString(r.MIGProfile) {
			return fieldErr("resources.mig_profile", "must look like 1g.10gb, not %q", r.MIGProfile)
		}
		if r.GPUCount > 1 {
			return fieldErr("resources.mig_profile", "is one MIG instance, but %d GPUs are asked for", r.GPUCount)
		}
		r.GPUCount = 1
	}
	if r.GPUMemoryGiB < 0 {
		return fieldErr("resources.gpu_memory_gib", "must not be negative, not %d", r.GPUMemoryGiB)
	}
	if r.GPUMemoryGiB > 0 && r.GPUCount == 0 {
		return fieldErr("resources.gpu_memory_gib", "needs a GPU: set accelerator or gpu_count")
	}
	return nil
}

func validate(cfg *Config, seen presence) error {
	if cfg.ModelName == "" {
		return fieldErr("model_name", "is required")
	}
	if err := ValidateModelName(cfg.ModelName); err != nil {
		return fieldErr("model_name", "%v", err)
	}
	switch cfg.Runtime {
	case RuntimePython, RuntimeProcess, RuntimeDocker:
	default:
		return fieldErr("runtime", "must be a mapping of Truss's runtime settings (predict_concurrency, ...), not %q: modelplane infers how to run the package (docker_server or command: a process; image or base_image: a container; else a Truss Model class)", cfg.Runtime)
	}
	// A command or image the runtime would ignore is almost always a forgotten key;
	// refusing it beats a replica that fails later for a reason far from the cause.
	if cfg.Runtime == RuntimeProcess {
		if cfg.DockerServer == nil && (len(cfg.Command) == 0 || cfg.Command[0] == "") {
			return fieldErr("command", "is required for runtime process")
		}
	} else if len(cfg.Command) > 0 {
		return fieldErr("command", "is only used by runtime process (runtime is %s)", cfg.Runtime)
	}
	if cfg.Runtime == RuntimeDocker {
		if strings.TrimSpace(cfg.Image) == "" {
			return fieldErr("image", "is required for runtime docker")
		}
		if strings.ContainsAny(cfg.Image, " \t\n") {
			return fieldErr("image", "must not contain spaces, not %q", cfg.Image)
		}
	} else if cfg.Image != "" {
		return fieldErr("image", "is only used by runtime docker (runtime is %s)", cfg.Runtime)
	}
	if err := validateTruss(cfg); err != nil {
		return err
	}
	if err := resolveGPUs(&cfg.Resources, seen); err != nil {
		return err
	}
	if _, err := ParseCPU(cfg.Resources.CPU); cfg.Resources.CPU != "" && err != nil {
		return fieldErr("resources.cpu", "%v", err)
	}
	if _, err := ParseMemory(cfg.Resources.Memory); cfg.Resources.Memory != "" && err != nil {
		return fieldErr("resources.memory", "%v", err)
	}
	for _, p := range []struct{ field, path string }{
		{"health_path", cfg.HealthPath}, {"predict_path", cfg.PredictPath},
	} {
		if !strings.HasPrefix(p.path, "/") || strings.ContainsAny(p.path, " \t\r\n?#") {
			return fieldErr(p.field, "must be a path starting with /, not %q", p.path)
		}
	}
	for _, name := range sortedKeys(cfg.EnvironmentVariables) {
		field := "environment_variables." + name
		if !envNameRE.MatchString(name) {
			return fieldErr(field, "is not a valid variable name (letters, digits, _; not starting with a digit)")
		}
		if reservedEnvRE.MatchString(name) {
			return fieldErr(field, "is set by modelplane itself")
		}
		if strings.ContainsRune(cfg.EnvironmentVariables[name], 0) {
			return fieldErr(field, "must not contain NUL")
		}
	}
	listed := map[string]bool{}
	for i, name := range cfg.Secrets {
		field := fmt.Sprintf("secrets[%d]", i)
		if err := ValidateSecretName(name); err != nil {
			return fieldErr(field, "%v", err)
		}
		if listed[name] {
			return fieldErr(field, "%q is listed twice", name)
		}
		listed[name] = true
	}
	return nil
}

// ParseCPU returns a CPU quantity ("1", "0.5", "500m") in thousandths of a CPU.
func ParseCPU(s string) (int64, error) {
	if !cpuRE.MatchString(s) {
		return 0, fmt.Errorf("must be a number of CPUs such as 1, 0.5 or 500m, not %q", s)
	}
	var milli float64
	if n, ok := strings.CutSuffix(s, "m"); ok {
		v, err := strconv.ParseFloat(n, 64)
		if err != nil {
			return 0, err
		}
		milli = v
	} else {
		v, err := strconv.ParseFloat(s, 64)
		if err != nil {
			return 0, err
		}
		milli = v * 1000
	}
	if milli < 1 || milli > 1<<40 {
		return 0, fmt.Errorf("must be at least 1m and sensible, not %q", s)
	}
	return int64(math.Round(milli)), nil
}

var memoryUnits = map[string]float64{
	"": 1, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18,
	"Ki": 1 << 10, "Mi": 1 << 20, "Gi": 1 << 30, "Ti": 1 << 40, "Pi": 1 << 50, "Ei": 1 << 60,
}

// ParseMemory returns a memory quantity ("2Gi", "512Mi", "1G", or plain bytes) in bytes.
func ParseMemory(s string) (int64, error) {
	m := memoryRE.FindStringSubmatch(s)
	if m == nil {
		return 0, fmt.Errorf("must be an amount such as 2Gi, 512Mi or 1G, not %q", s)
	}
	v, err := strconv.ParseFloat(m[1], 64)
	if err != nil {
		return 0, err
	}
	b := v * memoryUnits[m[3]]
	if b < 1 || b >= math.MaxInt64 {
		return 0, fmt.Errorf("must be more than 0 bytes and fit in 63 bits, not %q", s)
	}
	return int64(b), nil
}

// JSON is the configuration as the model sees it (the python runtime's `config` argument):
// every key of config.yaml, unknown ones included, with the known keys replaced by their
// parsed values and defaults.
func (c Config) JSON() ([]byte, error) {
	out := map[string]any{}
	if strings.TrimSpace(c.Raw) != "" {
		var raw any
		if err := yaml.Unmarshal([]byte(c.Raw), &raw); err != nil {
			return nil, fmt.Errorf("%s: %w", ConfigFile, err)
		}
		if m, ok := jsonable(raw).(map[string]any); ok {
			out = m
		}
	}
	out["model_name"] = c.ModelName
	out["runtime"] = c.RuntimeSettings
	out["model_module_dir"] = c.ModelModuleDir
	out["model_class_filename"] = c.ModelClassFilename
	out["model_class_name"] = c.ModelClassName
	out["data_dir"] = c.DataDir
	out["bundled_packages_dir"] = c.BundledPackagesDir
	out["external_package_dirs"] = append([]string{}, c.ExternalPackageDirs...)
	out["requirements"] = append([]string{}, c.Requirements...)
	out["health_path"] = c.HealthPath
	out["predict_path"] = c.PredictPath
	out["resources"] = c.Resources
	out["environment_variables"] = nonNilStrings(c.EnvironmentVariables)
	out["secrets"] = append([]string{}, c.Secrets...)
	out["model_metadata"] = nonNilAny(c.ModelMetadata)
	out["hot_reload"] = c.HotReload
	if c.Runtime == RuntimeProcess {
		out["command"] = c.Command
	}
	if c.Runtime == RuntimeDocker {
		out["image"] = c.Image
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(out); err != nil {
		return nil, err
	}
	return bytes.TrimRight(buf.Bytes(), "\n"), nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func nonNilStrings(m map[string]string) map[string]string {
	if m == nil {
		return map[string]string{}
	}
	return m
}

func nonNilAny(m map[string]any) map[string]any {
	if m == nil {
		return map[string]any{}
	}
	return m
}
