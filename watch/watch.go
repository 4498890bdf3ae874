// Package watch is `modelplane watch`: it keeps a model's development deployment in step with
// a package directory as it is edited. Each burst of saves becomes one patch, computed against
// the deployment's last point, staged and synced; a change that cannot be patched deploys the
// directory again.
package watch

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/modelplane/modelplane/apiv1"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
)

// Defaults of Options.
const (
	// DefaultDebounce is how long the directory must be quiet before a patch is made: editors
	// save in several writes (a temporary file, a rename, a chmod).
	DefaultDebounce = 150 * time.Millisecond
	// DefaultKeepAwake is the lease that holds the deployment up, renewed every third of it.
	DefaultKeepAwake = 60 * time.Second
)

// Options configure Run.
type Options struct {
	// Dir is the model package directory (config.yaml at its root).
	Dir string
	// ModelName names the model; empty takes model_name from Dir/config.yaml.
	ModelName string
	Client    *client.Client
	// Push deploys Dir as the model's development deployment (creating the model on first
	// push) and returns once it is ACTIVE.
	Push func(ctx context.Context) error
	// Out receives one line per sync, and what went wrong.
	Out       io.Writer
	Debounce  time.Duration
	KeepAwake time.Duration
	// Now is the clock of the lines printed; nil means time.Now.
	Now func() time.Time
}

type watcher struct {
	o       Options
	modelID string
	// head is the deployment's newest point, which the next patch starts from.
	head     patch.Point
	headHash string
	// read is the hash of the directory's point (patch.FromDir) as the last sync read it, ""
	// when that read failed or a push came after it: a check syncs again only when the
	// directory has changed since.
	read string
}

// watchTree starts the file watcher on dir and every package directory below it. The tests
// replace it to change files before the watch starts, or to choose which events arrive.
var watchTree = func(dir string) (*fsnotify.Watcher, error) {
	fsw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watching %s: %w", dir, err)
	}
	if err := addTree(fsw, dir); err != nil {
		fsw.Close()
		return nil, err
	}
	return fsw, nil
}

// Run watches until ctx ends (nil) or the watch cannot go on (the error).
func Run(ctx context.Context, o Options) error {
	if o.Debounce <= 0 {
		o.Debounce = DefaultDebounce
	}
	if o.KeepAwake <= 0 {
		o.KeepAwake = DefaultKeepAwake
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Out == nil {
		o.Out = io.Discard
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return err
	}
	o.Dir = dir
	if o.ModelName == "" {
		cfg, err := modelpkg.ReadConfig(dir)
		if err != nil {
			return err
		}
		o.ModelName = cfg.ModelName
	}
	w := &watcher{o: o}

	if err := w.attach(ctx); err != nil {
		return err
	}
	go w.keepAwake(ctx)
	w.sync(ctx)
	fsw, err := watchTree(dir)
	if err != nil {
		return err
	}
	defer fsw.Close()
	w.printf("watching %s for model %s (%s); Ctrl-C to stop", dir, o.ModelName, w.modelID)

	// The timer fires a debounce after the last event, and then syncs; or a debounce after
	// the last sync (or the watch's start), and then checks the directory against what was
	// synced: an edit written before the watch started, or completed after a sync had read
	// it, brings no event of its own. A check that finds the directory changed syncs, and the
	// sync is checked in turn, so a file rewritten all the time is synced once a debounce.
	timer := time.NewTimer(o.Debounce)
	defer timer.Stop()
	fire, check := timer.C, true
	arm := func(checking bool) {
		timer.Reset(o.Debounce)
		fire, check = timer.C, checking
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case err, ok := <-fsw.Errors:
			if !ok {
				return errors.New("the file watcher stopped")
			}
			w.printf("file watcher: %v", err)
			if fire == nil {
				arm(true) // events may have been lost (an overflow): look at the files
			}
		case ev, ok := <-fsw.Events:
			if !ok {
				return errors.New("the file watcher stopped")
			}
			if ignored(dir, ev.Name) {
				continue
			}
			if ev.Has(fsnotify.Create) {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					_ = addTree(fsw, ev.Name)
				}
			}
			arm(false)
		case <-fire:
			fire = nil
			if check && !w.behind() {
				continue
			}
			w.sync(ctx)
			arm(true)
		}
	}
}

// attach finds the model's development deployment, pushing the directory when there is none,
// and takes its newest point.
func (w *watcher) attach(ctx context.Context) error {
	m, ok, err := w.model(ctx)
	if err != nil {
		return err
	}
	if !ok || m.DevelopmentDeploymentID == nil {
		w.printf("model %s has no development deployment: pushing %s", w.o.ModelName, w.o.Dir)
		return w.push(ctx)
	}
	w.modelID = m.ID
	return w.refresh(ctx)
}

func (w *watcher) model(ctx context.Context) (apiv1.ModelV1, bool, error) {
	models, err := w.o.Client.Models(ctx)
	if err != nil {
		return apiv1.ModelV1{}, false, err
	}
	for _, m := range models {
		if m.Name == w.o.ModelName {
			return m, true, nil
		}
	}
	return apiv1.ModelV1{}, false, nil
}

// push deploys the directory again and starts over from the new deployment's point.
func (w *watcher) push(ctx context.Context) error {
	start := time.Now()
	if err := w.o.Push(ctx); err != nil {
		return fmt.Errorf("pushing the development deployment: %w", err)
	}
	m, ok, err := w.model(ctx)
	if err != nil {
		return err
	}
	if !ok || m.DevelopmentDeploymentID == nil {
		return fmt.Errorf("model %s has no development deployment after the push", w.o.ModelName)
	}
	w.modelID = m.ID
	w.printf("pushed development deployment %s in %s", *m.DevelopmentDeploymentID, round(time.Since(start)))
	if err := w.refresh(ctx); err != nil {
		return err
	}
	// The push sent the directory as it was then, not what a sync read before it: a check
	// syncs whatever differs from the pushed point.
	w.read = ""
	return nil
}

func (w *watcher) refresh(ctx context.Context) error {
	st, err := w.o.Client.Patches(ctx, w.modelID)
	if err != nil {
		return fmt.Errorf("reading the development deployment's patch state: %w", err)
	}
	if st.PatchPoint.ContentHashes == nil {
		return errors.New("the API answered no patch point")
	}
	w.head, w.headHash = st.PatchPoint.Point(), st.PatchHash
	return nil
}

// sync makes the directory's changes since the deployment's newest point into a patch, stages
// it and applies it. What goes wrong is printed, and the next save tries again.
func (w *watcher) sync(ctx context.Context) {
	start := time.Now()
	line, err := w.syncOnce(ctx)
	switch {
	case ctx.Err() != nil:
	case err != nil:
		w.printf("error: %v", err)
	case line != "":
		w.printf("%s (%s)", line, round(time.Since(start)))
	}
}

func (w *watcher) syncOnce(ctx context.Context) (string, error) {
	w.read = ""
	local, err := patch.FromDir(w.o.Dir)
	if err != nil {
		return "", err
	}
	w.read = local.Hash()
	afterRead()
	cfg, err := modelpkg.ParseConfig([]byte(local.Config))
	if err != nil {
		return "", fmt.Errorf("config.yaml: %w", err)
	}
	if err := keepPackedExternal(w.o.Dir, w.head, local); err != nil {
		return "", err
	}
	hot := cfg.HotReload && cfg.Runtime == modelpkg.RuntimePython
	var changed string
	if local.Hash() != w.headHash {
		ops, err := patch.Diff(w.head, local, w.o.Dir, hot)
		if errors.Is(err, patch.ErrUnpatchable) {
			return w.redeploy(ctx, err.Error())
		}
		if err != nil {
			return "", err
		}
		st, err := w.o.Client.StagePatch(ctx, w.modelID, apiv1.PatchRequest{
			PrevPatchHash: w.headHash, NextPatchPoint: local, PatchOps: ops,
		})
		if client.IsStatus(err, http.StatusConflict) {
			// Someone else patched the deployment: start from its point next time.
			if rerr := w.refresh(ctx); rerr != nil {
				return "", rerr
			}
			return "", fmt.Errorf("%v; the next save patches against the new point", err)
		}
		if err != nil {
			return "", err
		}
		w.head, w.headHash = local, st.PatchHash
		changed = describe(ops)
	}
	res, err := w.o.Client.SyncPatches(ctx, w.modelID)
	if err != nil {
		return "", err
	}
	if res.NeedsFullDeployReason != nil {
		return w.redeploy(ctx, *res.NeedsFullDeployReason)
	}
	if changed == "" && res.How == "unchanged" {
		return "", nil
	}
	if changed == "" {
		changed = "staged changes"
	}
	line := fmt.Sprintf("synced %s by %s", changed, strings.ReplaceAll(res.How, "_", " "))
	if res.ReloadError != "" {
		line += ": " + res.ReloadError
	}
	return line, nil
}

// afterRead runs once a sync has read the directory's point; the tests finish a file there.
var afterRead = func() {}

// behind reports whether the directory has changed since the last sync read it and differs
// from the deployment's point. A directory that did not change is left for the next save, as
// after a sync that failed: trying it again would fail again. A directory that cannot be read
// is worth one sync, which prints why, unless the last sync could not read it either.
func (w *watcher) behind() bool {
	local, err := patch.FromDir(w.o.Dir)
	if err != nil {
		return w.read != ""
	}
	if local.Hash() == w.read {
		return false
	}
	if err := keepPackedExternal(w.o.Dir, w.head, local); err != nil {
		return true // the sync prints why
	}
	return local.Hash() != w.headHash
}

// keepPackedExternal carries head's .external entries into local when the directory has no
// .external of its own but its config names external_package_dirs: a push packs those
// outside the package there (modelpkg.PackWithExternal), and a patch computed from the
// directory alone would delete them. Edits to them reach the deployment with the next push.
func keepPackedExternal(dir string, head, local patch.Point) error {
	if local.Has(modelpkg.ExternalRoot) {
		return nil // the package's own directory, patched like any other
	}
	external, err := modelpkg.ExternalPackageDirs(dir)
	if err != nil || len(external) == 0 {
		return err
	}
	for rel, h := range head.ContentHashes {
		if rel == modelpkg.ExternalRoot || strings.HasPrefix(rel, modelpkg.ExternalRoot+"/") {
			local.ContentHashes[rel] = h
		}
	}
	return nil
}

func (w *watcher) redeploy(ctx context.Context, reason string) (string, error) {
	w.printf("the change needs a new deployment (%s): pushing", reason)
	if err := w.push(ctx); err != nil {
		return "", err
	}
	return "", nil
}

// keepAwake renews the lease that keeps the deployment from scaling to zero while watched.
func (w *watcher) keepAwake(ctx context.Context) {
	t := time.NewTicker(w.o.KeepAwake / 3)
	defer t.Stop()
	for {
		if err := w.o.Client.KeepAwake(ctx, w.modelID, w.o.KeepAwake); err != nil && ctx.Err() == nil {
			w.printf("keeping the deployment awake: %v", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (w *watcher) printf(format string, args ...any) {
	fmt.Fprintf(w.o.Out, "%s %s\n", w.o.Now().Format("15:04:05"), fmt.Sprintf(format, args...))
}

// describe lists what a patch changes: "model/model.py", "config.yaml (ECHO_GREETING)".
func describe(ops []patch.Op) string {
	var parts, vars []string
	for _, op := range ops {
		switch op.Type {
		case patch.TypeModelCode:
			mark := map[string]string{patch.ActionAdd: "+", patch.ActionRemove: "-"}[op.Action]
			parts = append(parts, mark+op.Path)
		case patch.TypeEnvironment:
			vars = append(vars, op.Name)
		}
	}
	for _, op := range ops {
		if op.Type == patch.TypeConfig {
			c := modelpkg.ConfigFile
			if len(vars) > 0 {
				sort.Strings(vars)
				c += " (" + strings.Join(vars, ", ") + ")"
			}
			parts = append(parts, c)
		}
	}
	if len(parts) > 6 {
		parts = append(parts[:5], fmt.Sprintf("and %d more", len(parts)-5))
	}
	return strings.Join(parts, ", ")
}

// addTree watches dir and every directory below it that is part of the package.
func addTree(fsw *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil // gone again already
			}
			return err
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && ignored(dir, p) {
			return filepath.SkipDir
		}
		if err := fsw.Add(p); err != nil {
			return fmt.Errorf("watching %s: %w", p, err)
		}
		return nil
	})
}

// ignored reports whether an event's path is outside what a package's point holds (an
// editor's swap file, the bytecode cache).
func ignored(root, p string) bool {
	rel, err := filepath.Rel(root, p)
	return err != nil || !patch.Tracked(filepath.ToSlash(rel))
}

func round(d time.Duration) time.Duration {
	if d < time.Second {
		return d.Round(time.Millisecond)
	}
	return d.Round(10 * time.Millisecond)
}
