package patch

import (
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"unicode/utf8"

	"github.com/modelplane/modelplane/modelpkg"
)

// Types of operation.
const (
	TypeModelCode   = "model_code"
	TypeConfig      = "config"
	TypeEnvironment = "environment_variable"
)

// Actions of an operation.
const (
	ActionAdd    = "ADD"
	ActionUpdate = "UPDATE"
	ActionRemove = "REMOVE"
)

// MaxOps bounds the operations of one patch.
const MaxOps = 10_000

// Op is one operation of a patch.
//
//   - model_code: ADD, UPDATE or REMOVE the file at Path (relative to the package's root),
//     with Content (text) or ContentBytes (bytes, base64 on the wire); an ADD with neither is
//     a directory, and removing a directory removes what it holds.
//   - config: UPDATE config.yaml to Content.
//   - environment_variable: ADD, UPDATE or REMOVE the variable Name (Value); it restates a
//     change of config.yaml's environment_variables and must agree with the patch's config.
//
// HotReload asks for the change to be taken by the running model server without a restart;
// only model code can be.
type Op struct {
	Type         string  `json:"type"`
	Action       string  `json:"action"`
	Path         string  `json:"path,omitempty"`
	Content      *string `json:"content,omitempty"`
	ContentBytes []byte  `json:"content_bytes,omitempty"`
	Name         string  `json:"name,omitempty"`
	Value        *string `json:"value,omitempty"`
	HotReload    bool    `json:"hot_reload"`
}

// IsDir reports whether a model_code ADD makes a directory.
func (o Op) IsDir() bool { return o.Content == nil && o.ContentBytes == nil }

// Data is the file content of a model_code ADD or UPDATE.
func (o Op) Data() []byte {
	if o.Content != nil {
		return []byte(*o.Content)
	}
	return o.ContentBytes
}

// Error is a patch that is not consistent; Field names the part of the request at fault.
type Error struct {
	Field   string
	Message string
}

func (e *Error) Error() string { return e.Field + ": " + e.Message }

func opErr(i int, field, format string, args ...any) *Error {
	f := fmt.Sprintf("patch_ops[%d]", i)
	if field != "" {
		f += "." + field
	}
	return &Error{Field: f, Message: fmt.Sprintf(format, args...)}
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// Next applies ops to prev and returns the point they lead to, or an *Error naming the first
// operation that does not fit: a malformed one, an ADD of what exists, an UPDATE or REMOVE of
// what does not, a file whose directory is missing, a config.yaml that does not parse, or an
// environment variable that disagrees with the resulting config.
func Next(prev Point, ops []Op) (Point, error) {
	if len(ops) == 0 {
		return Point{}, &Error{Field: "patch_ops", Message: "no operations"}
	}
	if len(ops) > MaxOps {
		return Point{}, &Error{Field: "patch_ops", Message: fmt.Sprintf("more than %d operations", MaxOps)}
	}
	next := prev.clone()
	var envOps []int
	for i, op := range ops {
		switch op.Type {
		case TypeModelCode:
			if err := applyCode(&next, i, op); err != nil {
				return Point{}, err
			}
		case TypeConfig:
			switch {
			case op.Action != ActionUpdate:
				return Point{}, opErr(i, "action", "a config operation is an UPDATE")
			case op.Content == nil:
				return Point{}, opErr(i, "content", "required: the new config.yaml text")
			case op.HotReload:
				return Point{}, opErr(i, "hot_reload", "a config change restarts the model server; it cannot be hot reloaded")
			}
			if _, err := modelpkg.ParseConfig([]byte(*op.Content)); err != nil {
				return Point{}, opErr(i, "content", "config.yaml: %v", err)
			}
			next.Config = *op.Content
		case TypeEnvironment:
			switch {
			case !envName.MatchString(op.Name):
				return Point{}, opErr(i, "name", "required: a variable name ([A-Za-z_][A-Za-z0-9_]*)")
			case op.Action != ActionAdd && op.Action != ActionUpdate && op.Action != ActionRemove:
				return Point{}, opErr(i, "action", "must be ADD, UPDATE or REMOVE")
			case op.Action != ActionRemove && op.Value == nil:
				return Point{}, opErr(i, "value", "required for %s", op.Action)
			case op.HotReload:
				return Point{}, opErr(i, "hot_reload", "a variable reaches the model server only when it restarts; it cannot be hot reloaded")
			}
			envOps = append(envOps, i)
		case "":
			return Point{}, opErr(i, "type", "required: model_code, config or environment_variable")
		default:
			return Point{}, opErr(i, "type", "unknown type %q (model_code, config or environment_variable)", op.Type)
		}
	}
	if len(envOps) > 0 {
		cfg, err := modelpkg.ParseConfig([]byte(next.Config))
		if err != nil {
			return Point{}, &Error{Field: "patch_ops", Message: "config.yaml: " + err.Error()}
		}
		for _, i := range envOps {
			op := ops[i]
			v, ok := cfg.EnvironmentVariables[op.Name]
			switch {
			case op.Action == ActionRemove && ok:
				return Point{}, opErr(i, "name", "REMOVE of %s, but the patch's config.yaml still sets it", op.Name)
			case op.Action != ActionRemove && (!ok || v != *op.Value):
				return Point{}, opErr(i, "value", "%s of %s disagrees with the patch's config.yaml environment_variables", op.Action, op.Name)
			}
		}
	}
	return next, nil
}

func applyCode(p *Point, i int, op Op) error {
	if err := CheckPath(op.Path); err != nil {
		return opErr(i, "path", "%v", err)
	}
	if op.Content != nil && op.ContentBytes != nil {
		return opErr(i, "content", "give content or content_bytes, not both")
	}
	rel := op.Path
	if dir := path.Dir(rel); dir != "." && op.Action != ActionRemove && !p.IsDir(dir) {
		return opErr(i, "path", "its directory %q does not exist; ADD it first", dir)
	}
	switch op.Action {
	case ActionAdd:
		if p.Has(rel) {
			return opErr(i, "path", "%s exists; UPDATE it, or REMOVE it first", rel)
		}
		if op.IsDir() {
			p.ContentHashes[rel] = nil
			return nil
		}
		h := SumHex(op.Data())
		p.ContentHashes[rel] = &h
	case ActionUpdate:
		if op.IsDir() {
			return opErr(i, "content", "required for UPDATE")
		}
		if h, ok := p.ContentHashes[rel]; !ok || h == nil {
			return opErr(i, "path", "%s is not a file of the package; ADD it", rel)
		}
		h := SumHex(op.Data())
		p.ContentHashes[rel] = &h
	case ActionRemove:
		if !op.IsDir() {
			return opErr(i, "content", "a REMOVE takes no content")
		}
		if !p.Has(rel) {
			return opErr(i, "path", "%s is not in the package", rel)
		}
		for k := range p.ContentHashes {
			if k == rel || strings.HasPrefix(k, rel+"/") {
				delete(p.ContentHashes, k)
			}
		}
	default:
		return opErr(i, "action", "must be ADD, UPDATE or REMOVE")
	}
	return nil
}

// ErrUnpatchable is a change of the package that no operation can express (a symlink).
var ErrUnpatchable = errors.New("the change cannot be patched")

// Diff returns the operations that take a package from prev to next, reading the content of
// files from dir, the package next was computed from. Model code operations carry hotReload.
// Removals come first (only the topmost of what goes), then additions and updates in path
// order, so a directory comes before what it holds. A symlink that changed is
// ErrUnpatchable; a config.yaml that does not parse is an error saying why.
func Diff(prev, next Point, dir string, hotReload bool) ([]Op, error) {
	var removes, writes []Op
	for _, rel := range union(prev, next) {
		ph, inPrev := prev.ContentHashes[rel]
		nh, inNext := next.ContentHashes[rel]
		switch {
		case inPrev && inNext && ((ph == nil) == (nh == nil)) && (ph == nil || *ph == *nh):
			continue // unchanged
		case inPrev && (!inNext || (ph == nil) != (nh == nil)):
			if parent := path.Dir(rel); parent == "." || !goneDir(prev, next, parent) {
				removes = append(removes, Op{Type: TypeModelCode, Action: ActionRemove, Path: rel, HotReload: hotReload})
			}
			if !inNext {
				continue
			}
		}
		action := ActionUpdate
		if !inPrev || (ph == nil) != (nh == nil) {
			action = ActionAdd
		}
		op := Op{Type: TypeModelCode, Action: action, Path: rel, HotReload: hotReload}
		if nh != nil {
			abs := filepath.Join(dir, filepath.FromSlash(rel))
			fi, err := os.Lstat(abs)
			if err != nil {
				return nil, err
			}
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("%w: %s is not a regular file", ErrUnpatchable, rel)
			}
			b, err := os.ReadFile(abs)
			if err != nil {
				return nil, err
			}
			if SumHex(b) != *nh {
				return nil, fmt.Errorf("%s changed while it was read; try again", rel)
			}
			if utf8.Valid(b) {
				s := string(b)
				op.Content = &s
			} else {
				op.ContentBytes = b
			}
		}
		writes = append(writes, op)
	}
	ops := append(removes, writes...)
	if prev.Config != next.Config {
		cfgOps, err := configOps(prev.Config, next.Config)
		if err != nil {
			return nil, err
		}
		ops = append(ops, cfgOps...)
	}
	return ops, nil
}

// goneDir reports whether dir is a directory of prev that next no longer has as a directory.
func goneDir(prev, next Point, dir string) bool {
	return prev.IsDir(dir) && !next.IsDir(dir)
}

func union(a, b Point) []string {
	seen := make(map[string]bool, len(a.ContentHashes)+len(b.ContentHashes))
	var out []string
	for _, p := range []Point{a, b} {
		for k := range p.ContentHashes {
			if !seen[k] {
				seen[k] = true
				out = append(out, k)
			}
		}
	}
	sort.Strings(out)
	return out
}

// configOps are the config operation and the environment_variable operations that restate it.
func configOps(prevText, nextText string) ([]Op, error) {
	next, err := modelpkg.ParseConfig([]byte(nextText))
	if err != nil {
		return nil, fmt.Errorf("config.yaml: %w", err)
	}
	// A previous config that does not parse has no variables to compare with.
	prev, _ := modelpkg.ParseConfig([]byte(prevText))
	ops := []Op{{Type: TypeConfig, Action: ActionUpdate, Content: &nextText}}
	names := make([]string, 0, len(prev.EnvironmentVariables)+len(next.EnvironmentVariables))
	for k := range prev.EnvironmentVariables {
		names = append(names, k)
	}
	for k := range next.EnvironmentVariables {
		if _, ok := prev.EnvironmentVariables[k]; !ok {
			names = append(names, k)
		}
	}
	sort.Strings(names)
	for _, k := range names {
		pv, inPrev := prev.EnvironmentVariables[k]
		nv, inNext := next.EnvironmentVariables[k]
		switch {
		case !inNext:
			ops = append(ops, Op{Type: TypeEnvironment, Action: ActionRemove, Name: k})
		case !inPrev:
			ops = append(ops, Op{Type: TypeEnvironment, Action: ActionAdd, Name: k, Value: &nv})
		case pv != nv:
			ops = append(ops, Op{Type: TypeEnvironment, Action: ActionUpdate, Name: k, Value: &nv})
		}
	}
	return ops, nil
}
