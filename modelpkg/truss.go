package modelpkg

import (
	"fmt"
	"path"
	"regexp"
	"strings"
	"unicode"
	"unicode/utf8"

	"go.yaml.in/yaml/v3"
)

// This file holds the parts of config.yaml that Truss defines beyond modelplane's own keys:
// the runtime settings, custom servers, base images, dependencies and the package layout.
// docs/API.md ("Truss keys") lists what each is used for, or why it is not used yet.

// Truss's defaults for the package layout.
const (
	DefaultModelModuleDir     = "model"
	DefaultModelClassFilename = "model.py"
	DefaultModelClassName     = "Model"
	DefaultDataDir            = "data"
	DefaultBundledPackagesDir = "packages"
)

// Truss's defaults for the runtime settings.
const (
	DefaultPredictConcurrency   = 1
	DefaultStreamingReadTimeout = 60
)

// Transports a model can be reached over (runtime.transport.kind).
const (
	TransportHTTP      = "http"
	TransportWebsocket = "websocket"
	TransportGRPC      = "grpc"
)

// MaxModelName is the longest model name, in characters.
const MaxModelName = 255

// ValidateModelName checks a model's display name: 1-255 printable characters, spaces
// included ("basic truss"). It is a name people read, not an identifier; models are
// addressed by ID.
func ValidateModelName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return fmt.Errorf("must not be empty")
	case !utf8.ValidString(name):
		return fmt.Errorf("must be UTF-8 text")
	case utf8.RuneCountInString(name) > MaxModelName:
		return fmt.Errorf("is %d characters; at most %d", utf8.RuneCountInString(name), MaxModelName)
	}
	for _, r := range name {
		if !unicode.IsPrint(r) {
			return fmt.Errorf("must be printable characters, not %q", name)
		}
	}
	return nil
}

// RuntimeSettings is Truss's `runtime:` mapping: how the model server is run and checked.
type RuntimeSettings struct {
	// PredictConcurrency is the most requests a replica serves at once (Truss's default 1).
	PredictConcurrency int `json:"predict_concurrency"`
	// StreamingReadTimeout is how many seconds a streamed answer may stay silent before the
	// gateway ends it.
	StreamingReadTimeout int          `json:"streaming_read_timeout"`
	EnableTracingData    bool         `json:"enable_tracing_data"`
	EnableDebugLogs      bool         `json:"enable_debug_logs"`
	Transport            Transport    `json:"transport"`
	HealthChecks         HealthChecks `json:"health_checks"`
	// PrewarmImports is modelplane's own: the modules (torch, transformers) the fork server
	// of the replica's Python environment imports before it forks the replica, besides the
	// ones it learned from the environment's earlier replicas. python runtime only.
	PrewarmImports []string `json:"prewarm_imports,omitempty"`
}

// MaxPrewarmImports is how many modules runtime.prewarm_imports may name.
const MaxPrewarmImports = 100

// Transport is runtime.transport: http (the default), websocket or grpc.
type Transport struct {
	Kind                string   `json:"kind"`
	PingIntervalSeconds *float64 `json:"ping_interval_seconds,omitempty"`
	PingTimeoutSeconds  *float64 `json:"ping_timeout_seconds,omitempty"`
}

// HealthChecks is runtime.health_checks; a nil field is the platform's default.
type HealthChecks struct {
	// RestartCheckDelaySeconds is how long after start liveness failures start to count.
	RestartCheckDelaySeconds *int `json:"restart_check_delay_seconds"`
	// RestartThresholdSeconds is how long liveness may fail before the replica is restarted.
	RestartThresholdSeconds *int `json:"restart_threshold_seconds"`
	// StopTrafficThresholdSeconds is how long readiness may fail before the replica is
	// taken out of rotation.
	StopTrafficThresholdSeconds *int `json:"stop_traffic_threshold_seconds"`
	// StartupThresholdSeconds is how long a replica may take to become ready.
	StartupThresholdSeconds *int `json:"startup_threshold_seconds"`
}

// DockerServer is Truss's docker_server: a model server of the package's own that speaks
// HTTP on ServerPort, instead of a Model class.
type DockerServer struct {
	// StartCommand is run with `sh -c`; it is required unless NoBuild runs the image's own
	// entrypoint.
	StartCommand      string `json:"start_command,omitempty"`
	ServerPort        int    `json:"server_port"`
	PredictEndpoint   string `json:"predict_endpoint"`
	ReadinessEndpoint string `json:"readiness_endpoint"`
	LivenessEndpoint  string `json:"liveness_endpoint"`
	RunAsUserID       *int   `json:"run_as_user_id,omitempty"`
	NoBuild           bool   `json:"no_build,omitempty"`
}

// BaseImage is Truss's base_image: the image a docker_server runs in.
type BaseImage struct {
	Image                string `json:"image"`
	PythonExecutablePath string `json:"python_executable_path,omitempty"`
}

var pythonVersionRE = regexp.MustCompile(`^py3[0-9]{1,2}$`)

// Interpreter is the python3.X executable python_version names ("py311" → "python3.11"); ""
// when none is named.
func (c Config) Interpreter() string {
	if c.PythonVersion == "" {
		return ""
	}
	return "python3." + strings.TrimPrefix(c.PythonVersion, "py3")
}

func decodeRuntimeSettings(v *yaml.Node, rs *RuntimeSettings, legacy *string) error {
	if isNull(v) {
		return nil
	}
	if v.Kind == yaml.ScalarNode {
		// Before Truss's mapping was read here, `runtime:` named modelplane's runtime; a
		// package written that way still runs as it says.
		*legacy = v.Value
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return fieldErr("runtime", "must be a mapping (predict_concurrency, streaming_read_timeout, health_checks, transport, ...)")
	}
	return eachKey(v, "runtime.", func(key, field string, val *yaml.Node) (err error) {
		switch key {
		case "predict_concurrency":
			rs.PredictConcurrency, err = positive(field, val)
		case "streaming_read_timeout":
			rs.StreamingReadTimeout, err = positive(field, val)
		case "enable_tracing_data":
			rs.EnableTracingData, err = boolean(field, val)
		case "enable_debug_logs":
			rs.EnableDebugLogs, err = boolean(field, val)
		case "is_websocket_endpoint":
			var ws bool
			if ws, err = boolean(field, val); ws && rs.Transport.Kind == "" {
				rs.Transport.Kind = TransportWebsocket
			}
		case "transport":
			err = decodeTransport(field, val, &rs.Transport)
		case "health_checks":
			err = decodeHealthChecks(field, val, &rs.HealthChecks)
		case "prewarm_imports":
			rs.PrewarmImports, err = stringList(field, val)
		case "num_workers":
			var n int
			if n, err = integer(field, val); err == nil && n > 1 {
				err = fieldErr(field, "one worker per server, as in Truss; raise predict_concurrency instead")
			}
		}
		return err
	})
}

func decodeTransport(field string, v *yaml.Node, t *Transport) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return fieldErr(field, "must be a mapping with kind: http, websocket or grpc")
	}
	return eachKey(v, field+".", func(key, sub string, val *yaml.Node) (err error) {
		switch key {
		case "kind":
			t.Kind, err = scalarString(sub, val)
		case "ping_interval_seconds":
			t.PingIntervalSeconds, err = optionalFloat(sub, val)
		case "ping_timeout_seconds":
			t.PingTimeoutSeconds, err = optionalFloat(sub, val)
		}
		return err
	})
}

func decodeHealthChecks(field string, v *yaml.Node, h *HealthChecks) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return fieldErr(field, "must be a mapping")
	}
	return eachKey(v, field+".", func(key, sub string, val *yaml.Node) (err error) {
		switch key {
		case "restart_check_delay_seconds":
			h.RestartCheckDelaySeconds, err = optionalInt(sub, val)
		case "restart_threshold_seconds":
			h.RestartThresholdSeconds, err = optionalInt(sub, val)
		case "stop_traffic_threshold_seconds":
			h.StopTrafficThresholdSeconds, err = optionalInt(sub, val)
		case "startup_threshold_seconds":
			h.StartupThresholdSeconds, err = optionalInt(sub, val)
		}
		return err
	})
}

func decodeDockerServer(v *yaml.Node, d **DockerServer) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return fieldErr("docker_server", "must be a mapping (start_command, server_port, predict_endpoint, readiness_endpoint, liveness_endpoint)")
	}
	ds := &DockerServer{}
	*d = ds
	return eachKey(v, "docker_server.", func(key, field string, val *yaml.Node) (err error) {
		switch key {
		case "start_command":
			ds.StartCommand, err = scalarString(field, val)
		case "server_port":
			ds.ServerPort, err = integer(field, val)
		case "predict_endpoint":
			ds.PredictEndpoint, err = scalarString(field, val)
		case "readiness_endpoint":
			ds.ReadinessEndpoint, err = scalarString(field, val)
		case "liveness_endpoint":
			ds.LivenessEndpoint, err = scalarString(field, val)
		case "run_as_user_id":
			ds.RunAsUserID, err = optionalInt(field, val)
		case "no_build":
			ds.NoBuild, err = boolean(field, val)
		}
		return err
	})
}

func decodeBaseImage(v *yaml.Node, b **BaseImage) error {
	if isNull(v) {
		return nil
	}
	if v.Kind != yaml.MappingNode {
		return fieldErr("base_image", "must be a mapping with image (and python_executable_path)")
	}
	bi := &BaseImage{}
	*b = bi
	return eachKey(v, "base_image.", func(key, field string, val *yaml.Node) (err error) {
		switch key {
		case "image":
			bi.Image, err = scalarString(field, val)
		case "python_executable_path":
			bi.PythonExecutablePath, err = scalarString(field, val)
		}
		return err
	})
}

// positive decodes an integer that, when given, is at least 1: 0 would read as "unset".
func positive(field string, v *yaml.Node) (int, error) {
	n, err := integer(field, v)
	if err == nil && !isNull(v) && n < 1 {
		return 0, fieldErr(field, "must be at least 1, not %d", n)
	}
	return n, err
}

func optionalInt(field string, v *yaml.Node) (*int, error) {
	if isNull(v) {
		return nil, nil
	}
	n, err := integer(field, v)
	if err != nil {
		return nil, err
	}
	return &n, nil
}

func optionalFloat(field string, v *yaml.Node) (*float64, error) {
	if isNull(v) {
		return nil, nil
	}
	var f float64
	if v.Kind != yaml.ScalarNode || v.Decode(&f) != nil {
		return nil, fieldErr(field, "must be a number, not %q", v.Value)
	}
	return &f, nil
}

// packagePath checks a path inside the package (model_module_dir, data_dir, ...): relative,
// without "..", cleaned.
func packagePath(field, p string) (string, error) {
	if strings.TrimSpace(p) == "" {
		return "", fieldErr(field, "must not be empty")
	}
	if strings.ContainsRune(p, 0) || strings.Contains(p, `\`) {
		return "", fieldErr(field, "must be a relative path with / separators, not %q", p)
	}
	clean := path.Clean(p)
	if path.IsAbs(clean) || clean == ".." || strings.HasPrefix(clean, "../") {
		return "", fieldErr(field, "must be a path inside the package, not %q", p)
	}
	return clean, nil
}

// externalPath checks an external_package_dirs entry: a directory the CLI packs with the
// package, which may lie outside it ("../shared").
func externalPath(field, p string) (string, error) {
	if strings.TrimSpace(p) == "" || strings.ContainsRune(p, 0) {
		return "", fieldErr(field, "must be a directory path, not %q", p)
	}
	return path.Clean(p), nil
}

// endpoint checks a server path: starting with /, no spaces, query or fragment.
func endpoint(field, p string) error {
	if !strings.HasPrefix(p, "/") || strings.ContainsAny(p, " \t\r\n?#") {
		return fieldErr(field, "must be a path starting with /, not %q", p)
	}
	return nil
}

// inferRuntime picks how the package runs when config.yaml does not say: a docker_server
// with a base image runs in a container, one without runs on the host as a process; a
// command runs as a process, an image in a container; anything else is a Truss Model class.
func inferRuntime(cfg *Config) string {
	switch {
	case cfg.DockerServer != nil && cfg.BaseImage != nil && cfg.BaseImage.Image != "":
		return RuntimeDocker
	case cfg.DockerServer != nil, len(cfg.Command) > 0:
		return RuntimeProcess
	case cfg.Image != "":
		return RuntimeDocker
	}
	return RuntimePython
}

// applyTrussDefaults fills what Truss defaults and what a docker_server implies.
func applyTrussDefaults(cfg *Config) {
	rs := &cfg.RuntimeSettings
	if rs.PredictConcurrency == 0 {
		rs.PredictConcurrency = DefaultPredictConcurrency
	}
	if rs.StreamingReadTimeout == 0 {
		rs.StreamingReadTimeout = DefaultStreamingReadTimeout
	}
	if rs.Transport.Kind == "" {
		rs.Transport.Kind = TransportHTTP
	}
	for _, d := range []struct {
		field *string
		def   string
	}{
		{&cfg.ModelModuleDir, DefaultModelModuleDir},
		{&cfg.ModelClassFilename, DefaultModelClassFilename},
		{&cfg.ModelClassName, DefaultModelClassName},
		{&cfg.DataDir, DefaultDataDir},
		{&cfg.BundledPackagesDir, DefaultBundledPackagesDir},
	} {
		if *d.field == "" {
			*d.field = d.def
		}
	}
	if ds := cfg.DockerServer; ds != nil {
		if cfg.HealthPath == "" {
			cfg.HealthPath = ds.ReadinessEndpoint
		}
		if cfg.PredictPath == "" {
			cfg.PredictPath = ds.PredictEndpoint
		}
		if cfg.Image == "" && cfg.BaseImage != nil {
			cfg.Image = cfg.BaseImage.Image
		}
	}
}

// unsupported is a valid Truss config that this runtime cannot run: the API answers 422.
func unsupported(field, format string, args ...any) *FieldError {
	e := fieldErr(field, format, args...)
	e.Unsupported = true
	return e
}

// validateTruss checks the Truss keys once the runtime is known.
func validateTruss(cfg *Config) error {
	if err := validateRuntimeSettings(cfg.RuntimeSettings); err != nil {
		return err
	}
	for _, p := range []struct {
		field string
		value *string
	}{
		{"model_module_dir", &cfg.ModelModuleDir},
		{"data_dir", &cfg.DataDir},
		{"bundled_packages_dir", &cfg.BundledPackagesDir},
	} {
		clean, err := packagePath(p.field, *p.value)
		if err != nil {
			return err
		}
		*p.value = clean
	}
	if f := cfg.ModelClassFilename; strings.Contains(f, "/") || !strings.HasSuffix(f, ".py") || f == ".py" {
		return fieldErr("model_class_filename", "must be a .py file name inside model_module_dir, not %q", f)
	}
	if !pythonIdentRE.MatchString(cfg.ModelClassName) {
		return fieldErr("model_class_name", "must be a Python class name, not %q", cfg.ModelClassName)
	}
	for i, p := range cfg.ExternalPackageDirs {
		clean, err := externalPath(fmt.Sprintf("external_package_dirs[%d]", i), p)
		if err != nil {
			return err
		}
		cfg.ExternalPackageDirs[i] = clean
	}
	if b := cfg.BaseImage; b != nil && b.PythonExecutablePath != "" && !path.IsAbs(b.PythonExecutablePath) {
		return fieldErr("base_image.python_executable_path", "must be an absolute path, not %q", b.PythonExecutablePath)
	}
	if cfg.PythonVersion != "" && !pythonVersionRE.MatchString(cfg.PythonVersion) {
		return fieldErr("python_version", "must be py3 and a minor version such as py311, not %q", cfg.PythonVersion)
	}
	if err := validateRequirements(cfg); err != nil {
		return err
	}
	if err := validatePrewarmImports(cfg); err != nil {
		return err
	}
	if err := validateServer(cfg); err != nil {
		return err
	}
	return nil
}

var (
	pythonIdentRE  = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)
	pythonModuleRE = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$`)
)

func validatePrewarmImports(cfg *Config) error {
	mods := cfg.RuntimeSettings.PrewarmImports
	if len(mods) == 0 {
		return nil
	}
	if cfg.Runtime != RuntimePython {
		return unsupported("runtime.prewarm_imports", "only a Truss model (the python runtime) is started from a pre-warmed interpreter")
	}
	if len(mods) > MaxPrewarmImports {
		return fieldErr("runtime.prewarm_imports", "must name at most %d modules, not %d", MaxPrewarmImports, len(mods))
	}
	for i, m := range mods {
		if len(m) > 200 || !pythonModuleRE.MatchString(m) {
			return fieldErr(fmt.Sprintf("runtime.prewarm_imports[%d]", i), "must be a module name such as torch or transformers.models, not %q", m)
		}
	}
	return nil
}

func validateRuntimeSettings(rs RuntimeSettings) error {
	switch {
	case rs.PredictConcurrency < 1 || rs.PredictConcurrency > 10000:
		return fieldErr("runtime.predict_concurrency", "must be between 1 and 10000, not %d", rs.PredictConcurrency)
	case rs.StreamingReadTimeout < 1 || rs.StreamingReadTimeout > 86400:
		return fieldErr("runtime.streaming_read_timeout", "must be between 1 and 86400 seconds, not %d", rs.StreamingReadTimeout)
	}
	switch rs.Transport.Kind {
	case TransportHTTP, TransportWebsocket:
	case TransportGRPC:
		return unsupported("runtime.transport.kind", "grpc is not served yet: use http or websocket")
	default:
		return fieldErr("runtime.transport.kind", "must be http, websocket or grpc, not %q", rs.Transport.Kind)
	}
	h := rs.HealthChecks
	for _, c := range []struct {
		field string
		v     *int
		min   int
	}{
		{"restart_check_delay_seconds", h.RestartCheckDelaySeconds, 0},
		{"restart_threshold_seconds", h.RestartThresholdSeconds, 1},
		{"stop_traffic_threshold_seconds", h.StopTrafficThresholdSeconds, 1},
		{"startup_threshold_seconds", h.StartupThresholdSeconds, 1},
	} {
		if c.v != nil && (*c.v < c.min || *c.v > 86400) {
			return fieldErr("runtime.health_checks."+c.field, "must be between %d and 86400 seconds, not %d", c.min, *c.v)
		}
	}
	return nil
}

func validateRequirements(cfg *Config) error {
	if len(cfg.Requirements) > 0 && cfg.RequirementsFile != "" {
		return fieldErr("requirements_file", "give requirements or requirements_file, not both")
	}
	for i, r := range cfg.Requirements {
		if strings.TrimSpace(r) == "" || strings.ContainsAny(r, "\r\n\x00") {
			return fieldErr(fmt.Sprintf("requirements[%d]", i), "must be one requirement line, not %q", r)
		}
	}
	if cfg.RequirementsFile != "" {
		clean, err := packagePath("requirements_file", cfg.RequirementsFile)
		if err != nil {
			return err
		}
		cfg.RequirementsFile = clean
		if base := path.Base(clean); base == "pyproject.toml" || base == "uv.lock" {
			return unsupported("requirements_file", "%s is not read yet: give a pip requirements file", base)
		}
	}
	hasDeps := len(cfg.Requirements) > 0 || cfg.RequirementsFile != ""
	switch cfg.Runtime {
	case RuntimePython:
		if len(cfg.SystemPackages) > 0 {
			return unsupported("system_packages", "the python runtime runs on the node's own system: use the docker runtime (docker_server with a base_image that has them)")
		}
		if cfg.BaseImage != nil {
			return unsupported("base_image", "the python runtime runs on the node's own Python: use the docker runtime (docker_server with base_image)")
		}
	case RuntimeProcess:
		if len(cfg.SystemPackages) > 0 {
			return unsupported("system_packages", "a process runs on the node's own system: use the docker runtime (docker_server with a base_image that has them)")
		}
	case RuntimeDocker:
		if hasDeps {
			return unsupported("requirements", "the docker runtime runs its image as it is: install the requirements in the image, or run without an image to have them installed")
		}
		if len(cfg.SystemPackages) > 0 {
			return unsupported("system_packages", "the docker runtime runs its image as it is: install the packages in the image")
		}
	}
	if len(cfg.BuildCommands) > 0 {
		return unsupported("build_commands", "images are not built here: run the commands in the image's own build and use the docker runtime")
	}
	return nil
}

func validateServer(cfg *Config) error {
	ds := cfg.DockerServer
	if ds == nil {
		if cfg.BaseImage != nil && cfg.Runtime == RuntimeDocker && cfg.Image == "" {
			cfg.Image = cfg.BaseImage.Image
		}
		return nil
	}
	if cfg.Runtime == RuntimePython {
		return fieldErr("docker_server", "is a server of the package's own: it does not run in the python runtime")
	}
	if len(cfg.Command) > 0 {
		return fieldErr("command", "give docker_server.start_command or command, not both")
	}
	if ds.ServerPort < 1 || ds.ServerPort > 65535 {
		return fieldErr("docker_server.server_port", "is required: the port the server listens on (1-65535), not %d", ds.ServerPort)
	}
	for _, e := range []struct{ field, path string }{
		{"docker_server.predict_endpoint", ds.PredictEndpoint},
		{"docker_server.readiness_endpoint", ds.ReadinessEndpoint},
		{"docker_server.liveness_endpoint", ds.LivenessEndpoint},
	} {
		if e.path == "" {
			return fieldErr(e.field, "is required")
		}
		if err := endpoint(e.field, e.path); err != nil {
			return err
		}
	}
	if ds.RunAsUserID != nil && *ds.RunAsUserID <= 0 {
		return fieldErr("docker_server.run_as_user_id", "must be a user ID above 0, not %d", *ds.RunAsUserID)
	}
	switch {
	case ds.NoBuild && cfg.Runtime != RuntimeDocker:
		return fieldErr("docker_server.no_build", "runs base_image's own entrypoint: base_image.image is required")
	case !ds.NoBuild && strings.TrimSpace(ds.StartCommand) == "":
		return fieldErr("docker_server.start_command", "is required unless no_build runs the image's own entrypoint")
	}
	if cfg.BaseImage != nil && cfg.Image != cfg.BaseImage.Image {
		return fieldErr("image", "is %q but base_image.image is %q: give one", cfg.Image, cfg.BaseImage.Image)
	}
	return nil
}
