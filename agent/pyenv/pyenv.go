// Package pyenv builds the Python virtual environments that a model package's requirements
// run in: one per distinct requirement set on a node, under <state dir>/envs/<key>, built
// once and reused by every replica that asks for the same set.
//
// The key covers everything that changes what pip installs: the interpreter's exact version,
// the requirement lines, and the index and find-links the agent was configured with. pip's
// own configuration (PIP_* variables, pip.conf) comes from the agent's environment and stays
// the operator's choice.
package pyenv

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// formatVersion changes when the layout of an environment or the way it is built changes,
// so that environments of an older agent are not taken for ready ones.
const formatVersion = "modelplane-pyenv 1"

// ErrorTailLines is how many of pip's last lines a failed build's error carries.
const ErrorTailLines = 20

// State is where an environment's build stands.
type State string

// The states of a build.
const (
	Building State = "building"
	Ready    State = "ready"
	Failed   State = "failed"
)

// Config is the builder's configuration.
type Config struct {
	// Dir holds the environments, their lock files and their build logs.
	Dir string
	// IndexURL, when set, is pip's --index-url.
	IndexURL string
	// FindLinks, when set, is pip's --find-links (a directory or URL); without IndexURL pip
	// then looks nowhere else (--no-index).
	FindLinks string
	// Node names the node in error messages.
	Node   string
	Logger *slog.Logger
}

// Request is one requirement set to install.
type Request struct {
	// Interpreter is the python to build with ("python3.11"); empty is "python3".
	Interpreter string
	// PythonVersion is the config's python_version, for messages; empty when not given.
	PythonVersion string
	// Requirements are the requirement lines, in order.
	Requirements []string
	// RequirementsFile, when set, is the absolute path of the requirements file pip reads
	// (so that its nested -r and relative paths resolve as their author meant); Requirements
	// then hold its lines, for the key.
	RequirementsFile string
	// PackageDir is where pip runs, so that relative paths in requirements resolve there.
	PackageDir string
}

// Status is an environment's build as the agent tells it.
type Status struct {
	Key   string
	State State
	// Reused says the environment was there already when it was asked for: nothing ran.
	Reused bool
	// Dir is the environment's directory, set once it is ready.
	Dir string
	// Error says why the build failed, with pip's last lines.
	Error string
}

// Builder builds and reuses environments.
type Builder struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	builds map[string]*build
}

// build is one build of a key in this process; joiners wait on done.
type build struct {
	done chan struct{}
	st   Status
}

// New returns a builder that keeps its environments in cfg.Dir.
func New(cfg Config) (*Builder, error) {
	if cfg.Dir == "" {
		return nil, errors.New("pyenv: no directory")
	}
	if err := os.MkdirAll(cfg.Dir, 0o755); err != nil {
		return nil, err
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	// pip runs in each package's directory: a relative wheel directory would move with it.
	if cfg.FindLinks != "" && !strings.Contains(cfg.FindLinks, "://") && !filepath.IsAbs(cfg.FindLinks) {
		abs, err := filepath.Abs(cfg.FindLinks)
		if err != nil {
			return nil, err
		}
		cfg.FindLinks = abs
	}
	return &Builder{cfg: cfg, log: cfg.Logger, builds: map[string]*build{}}, nil
}

// Lines are the requirement lines of a requirements file's text, trimmed, without blank
// lines and comments.
func Lines(text string) []string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		out = append(out, l)
	}
	return out
}

func interpreter(req Request) string {
	if req.Interpreter == "" {
		return "python3"
	}
	return req.Interpreter
}

// Key resolves the request's interpreter and answers the key of its environment. An
// interpreter that is not installed is an error naming python_version.
func (b *Builder) Key(ctx context.Context, req Request) (string, error) {
	py := interpreter(req)
	notInstalled := func(detail string) error {
		msg := fmt.Sprintf("%s is not installed on node %s", py, b.cfg.Node)
		if req.PythonVersion != "" {
			msg = fmt.Sprintf("python_version %s: %s", req.PythonVersion, msg)
		}
		if detail != "" {
			msg += " (" + detail + ")"
		}
		return errors.New(msg)
	}
	if _, err := exec.LookPath(py); err != nil {
		return "", notInstalled("")
	}
	// A version manager's shim is on PATH even for versions it does not have: asking the
	// interpreter tells the two apart, and gives the exact version for the key.
	out, err := exec.CommandContext(ctx, py, "-c", "import sys; print(sys.version)").CombinedOutput()
	if err != nil {
		if ctx.Err() != nil {
			return "", ctx.Err()
		}
		return "", notInstalled(firstLine(string(out)))
	}
	h := sha256.New()
	fmt.Fprintf(h, "%s\npython %s\nindex-url %s\nfind-links %s\n", formatVersion, strings.TrimSpace(string(out)), b.cfg.IndexURL, b.cfg.FindLinks)
	for _, r := range req.Requirements {
		fmt.Fprintf(h, "requirement %s\n", strings.TrimSpace(r))
	}
	return hex.EncodeToString(h.Sum(nil))[:32], nil
}

func firstLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = s[:i]
	}
	return s
}

// Path is the directory of the environment with the key.
func (b *Builder) Path(key string) string { return filepath.Join(b.cfg.Dir, key) }

// LogPath is the build log of the environment with the key.
func (b *Builder) LogPath(key string) string { return filepath.Join(b.cfg.Dir, key+".log") }

func (b *Builder) ready(key string) bool {
	_, err := os.Stat(filepath.Join(b.Path(key), "bin", "python"))
	return err == nil
}

// Start starts the environment's build in the background, or joins the one under way, and
// answers where it stands. An environment that is there already is answered ready and
// reused; a failed one is built again. The build runs until it ends or ctx is done, so ctx
// is the agent's, not a request's.
func (b *Builder) Start(ctx context.Context, req Request) (Status, error) {
	key, err := b.Key(ctx, req)
	if err != nil {
		return Status{}, err
	}
	return b.start(ctx, key, req), nil
}

func (b *Builder) start(ctx context.Context, key string, req Request) Status {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bd, ok := b.builds[key]; ok && bd.st.State == Building {
		return bd.st
	}
	if b.ready(key) {
		return Status{Key: key, State: Ready, Reused: true, Dir: b.Path(key)}
	}
	bd := &build{done: make(chan struct{}), st: Status{Key: key, State: Building}}
	b.builds[key] = bd
	go b.run(ctx, bd, req)
	return bd.st
}

// Ensure answers the ready environment of the request, building it first when needed.
func (b *Builder) Ensure(ctx context.Context, req Request) (Status, error) {
	key, err := b.Key(ctx, req)
	if err != nil {
		return Status{}, err
	}
	st := b.start(context.WithoutCancel(ctx), key, req)
	if st.State == Ready {
		return st, nil
	}
	b.mu.Lock()
	bd := b.builds[key]
	b.mu.Unlock()
	select {
	case <-bd.done:
	case <-ctx.Done():
		return Status{}, ctx.Err()
	}
	b.mu.Lock()
	st = bd.st
	b.mu.Unlock()
	if st.State == Failed {
		return st, errors.New(st.Error)
	}
	return st, nil
}

// Status answers the build of key; false when this builder has neither built it nor has it
// on disk.
func (b *Builder) Status(key string) (Status, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if bd, ok := b.builds[key]; ok {
		return bd.st, true
	}
	if b.ready(key) {
		return Status{Key: key, State: Ready, Reused: true, Dir: b.Path(key)}, true
	}
	return Status{}, false
}

// LogTail is the last n lines of the key's build log.
func (b *Builder) LogTail(key string, n int) []string {
	data, err := os.ReadFile(b.LogPath(key))
	if err != nil {
		return []string{}
	}
	return tail(string(data), n)
}

func tail(text string, n int) []string {
	lines := strings.Split(strings.TrimRight(text, "\n"), "\n")
	if len(lines) == 1 && lines[0] == "" {
		return []string{}
	}
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return lines
}

func (b *Builder) run(ctx context.Context, bd *build, req Request) {
	key := bd.st.Key
	log := b.log.With("env", key)
	started := time.Now()
	reused, err := b.buildLocked(ctx, key, req)
	b.mu.Lock()
	if err != nil {
		bd.st.State, bd.st.Error = Failed, err.Error()
	} else {
		bd.st.State, bd.st.Dir, bd.st.Reused = Ready, b.Path(key), reused
	}
	close(bd.done)
	b.mu.Unlock()
	if err != nil {
		log.Warn("python environment build failed", "err", err)
		return
	}
	log.Info("python environment ready", "requirements", len(req.Requirements), "reused", reused,
		"seconds", time.Since(started).Round(time.Millisecond).Seconds())
}

// buildLocked builds the environment under the key's file lock, so that two agents sharing
// a state directory build it once; it answers true when the other one had.
func (b *Builder) buildLocked(ctx context.Context, key string, req Request) (bool, error) {
	lock, err := os.OpenFile(filepath.Join(b.cfg.Dir, key+".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return false, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return false, fmt.Errorf("locking the environment: %w", err)
	}
	defer func() { _ = syscall.Flock(int(lock.Fd()), syscall.LOCK_UN) }()
	if b.ready(key) {
		return true, nil
	}
	logf, err := os.Create(b.LogPath(key))
	if err != nil {
		return false, err
	}
	defer logf.Close()
	return false, b.install(ctx, key, req, logf)
}

// install builds the environment in a temporary directory and renames it into place, so that
// a failed or interrupted build leaves no half environment.
func (b *Builder) install(ctx context.Context, key string, req Request, logf io.Writer) (err error) {
	tmp, err := os.MkdirTemp(b.cfg.Dir, key+".tmp-")
	if err != nil {
		return err
	}
	// Replicas that run as users of their own read and run the environment.
	if err := os.Chmod(tmp, 0o755); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = os.RemoveAll(tmp)
		}
	}()
	py := interpreter(req)
	var out bytes.Buffer
	w := io.MultiWriter(logf, &out)
	run := func(dir string, argv ...string) error {
		fmt.Fprintf(logf, "$ %s\n", strings.Join(argv, " "))
		cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
		cmd.Dir, cmd.Stdout, cmd.Stderr = dir, w, w
		cmd.WaitDelay = 10 * time.Second
		return cmd.Run()
	}
	if err := run(b.cfg.Dir, py, "-m", "venv", tmp); err != nil {
		return b.failure("creating the virtual environment", err, out.String())
	}
	reqFile := req.RequirementsFile
	if reqFile == "" {
		reqFile = filepath.Join(tmp, "modelplane-requirements.txt")
		if err := os.WriteFile(reqFile, []byte(strings.Join(req.Requirements, "\n")+"\n"), 0o644); err != nil {
			return err
		}
	}
	argv := []string{filepath.Join(tmp, "bin", "python"), "-m", "pip", "install",
		"--disable-pip-version-check", "--no-input", "--progress-bar", "off"}
	if b.cfg.IndexURL != "" {
		argv = append(argv, "--index-url", b.cfg.IndexURL)
	}
	if b.cfg.FindLinks != "" {
		argv = append(argv, "--find-links", b.cfg.FindLinks)
		if b.cfg.IndexURL == "" {
			argv = append(argv, "--no-index")
		}
	}
	argv = append(argv, "-r", reqFile)
	dir := req.PackageDir
	if dir == "" {
		dir = tmp
	}
	out.Reset()
	if err := run(dir, argv...); err != nil {
		return b.failure("installing the requirements", err, out.String())
	}
	final := b.Path(key)
	if err := relocate(tmp, final); err != nil {
		return fmt.Errorf("moving the environment into place: %w", err)
	}
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("moving the environment into place: %w", err)
	}
	fmt.Fprintf(logf, "environment %s ready\n", key)
	return nil
}

func (b *Builder) failure(step string, err error, output string) error {
	return fmt.Errorf("%s failed on node %s (%v); last lines:\n%s", step, b.cfg.Node, err,
		strings.Join(tail(output, ErrorTailLines), "\n"))
}

// relocate rewrites the paths of the temporary directory that venv and pip wrote into the
// environment's scripts (shebangs, activate), so that its console scripts run from the final
// directory.
func relocate(tmp, final string) error {
	bin := filepath.Join(tmp, "bin")
	entries, err := os.ReadDir(bin)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		p := filepath.Join(bin, e.Name())
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		if !bytes.Contains(data, []byte(tmp)) || bytes.IndexByte(data, 0) >= 0 {
			continue
		}
		info, err := e.Info()
		if err != nil {
			return err
		}
		if err := os.WriteFile(p, bytes.ReplaceAll(data, []byte(tmp), []byte(final)), info.Mode().Perm()); err != nil {
			return err
		}
	}
	return nil
}
