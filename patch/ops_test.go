package patch_test

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/patch"
)

// nextBase is the point the Next tests start from. "model-extra.py" shares a prefix with
// "model" without being under it.
func nextBase() patch.Point {
	return patch.Point{
		ContentHashes: map[string]*string{
			"model":            nil,
			"model/model.py":   hashOf("v1"),
			"model/util.py":    hashOf("u"),
			"model-extra.py":   hashOf("e"),
			"data":             nil,
			"data/sub":         nil,
			"data/sub/x.bin":   hashOf(binary),
			"data/sub/keep.py": hashOf("k"),
		},
		Config: cfgEnvAB,
	}
}

// edit returns a copy of p with set applied (nil: a directory) and del removed.
func edit(p patch.Point, config string, set map[string]*string, del ...string) patch.Point {
	out := patch.Point{ContentHashes: map[string]*string{}, Config: config}
	for k, v := range p.ContentHashes {
		out.ContentHashes[k] = v
	}
	for k, v := range set {
		out.ContentHashes[k] = v
	}
	for _, k := range del {
		delete(out.ContentHashes, k)
	}
	return out
}

func code(action, rel string) patch.Op {
	return patch.Op{Type: patch.TypeModelCode, Action: action, Path: rel}
}

func codeText(action, rel, content string) patch.Op {
	op := code(action, rel)
	op.Content = &content
	return op
}

func codeBytes(action, rel string, content []byte) patch.Op {
	op := code(action, rel)
	op.ContentBytes = content
	return op
}

func configOp(text string) patch.Op {
	return patch.Op{Type: patch.TypeConfig, Action: patch.ActionUpdate, Content: &text}
}

func envOp(action, name string, value *string) patch.Op {
	return patch.Op{Type: patch.TypeEnvironment, Action: action, Name: name, Value: value}
}

func hot(op patch.Op) patch.Op {
	op.HotReload = true
	return op
}

func TestNext_AppliesEachOperation(t *testing.T) {
	base := nextBase()
	tests := []struct {
		name string
		ops  []patch.Op
		want patch.Point
	}{
		{
			"ADD a text file",
			[]patch.Op{codeText(patch.ActionAdd, "new.py", "x")},
			edit(base, cfgEnvAB, map[string]*string{"new.py": hashOf("x")}),
		},
		{
			"ADD a binary file as content_bytes",
			[]patch.Op{codeBytes(patch.ActionAdd, "data/w.bin", []byte(binary+"2"))},
			edit(base, cfgEnvAB, map[string]*string{"data/w.bin": hashOf(binary + "2")}),
		},
		{
			"ADD an empty file",
			[]patch.Op{codeText(patch.ActionAdd, "empty.py", "")},
			edit(base, cfgEnvAB, map[string]*string{"empty.py": hashOf("")}),
		},
		{
			"ADD a directory",
			[]patch.Op{code(patch.ActionAdd, "pkg")},
			edit(base, cfgEnvAB, map[string]*string{"pkg": nil}),
		},
		{
			"ADD nested directories and a file in one patch",
			[]patch.Op{code(patch.ActionAdd, "pkg"), code(patch.ActionAdd, "pkg/sub"), hot(codeText(patch.ActionAdd, "pkg/sub/m.py", "m"))},
			edit(base, cfgEnvAB, map[string]*string{"pkg": nil, "pkg/sub": nil, "pkg/sub/m.py": hashOf("m")}),
		},
		{
			"UPDATE a file with text",
			[]patch.Op{hot(codeText(patch.ActionUpdate, "model/model.py", "v2"))},
			edit(base, cfgEnvAB, map[string]*string{"model/model.py": hashOf("v2")}),
		},
		{
			"UPDATE a file with content_bytes",
			[]patch.Op{codeBytes(patch.ActionUpdate, "data/sub/x.bin", []byte{0, 1, 2})},
			edit(base, cfgEnvAB, map[string]*string{"data/sub/x.bin": hashOf("\x00\x01\x02")}),
		},
		{
			"UPDATE a file to empty",
			[]patch.Op{codeText(patch.ActionUpdate, "model/util.py", "")},
			edit(base, cfgEnvAB, map[string]*string{"model/util.py": hashOf("")}),
		},
		{
			"REMOVE a file",
			[]patch.Op{code(patch.ActionRemove, "model/util.py")},
			edit(base, cfgEnvAB, nil, "model/util.py"),
		},
		{
			"REMOVE a directory removes what it holds, not a sibling sharing its prefix",
			[]patch.Op{code(patch.ActionRemove, "model")},
			edit(base, cfgEnvAB, nil, "model", "model/model.py", "model/util.py"),
		},
		{
			"REMOVE a nested directory",
			[]patch.Op{code(patch.ActionRemove, "data/sub")},
			edit(base, cfgEnvAB, nil, "data/sub", "data/sub/x.bin", "data/sub/keep.py"),
		},
		{
			"REMOVE then ADD the same file",
			[]patch.Op{code(patch.ActionRemove, "model/util.py"), codeText(patch.ActionAdd, "model/util.py", "u2")},
			edit(base, cfgEnvAB, map[string]*string{"model/util.py": hashOf("u2")}),
		},
		{
			"a file becomes a directory",
			[]patch.Op{code(patch.ActionRemove, "model-extra.py"), code(patch.ActionAdd, "model-extra.py"), codeText(patch.ActionAdd, "model-extra.py/in.py", "i")},
			edit(base, cfgEnvAB, map[string]*string{"model-extra.py": nil, "model-extra.py/in.py": hashOf("i")}),
		},
		{
			"a directory becomes a file",
			[]patch.Op{code(patch.ActionRemove, "data"), codeText(patch.ActionAdd, "data", "now a file")},
			edit(base, cfgEnvAB, map[string]*string{"data": hashOf("now a file")}, "data/sub", "data/sub/x.bin", "data/sub/keep.py"),
		},
		{
			"config UPDATE without variable changes",
			[]patch.Op{configOp(cfgEnvAB + "# a comment\n")},
			edit(base, cfgEnvAB+"# a comment\n", nil),
		},
		{
			"config UPDATE restated by environment_variable ADD, UPDATE and REMOVE",
			[]patch.Op{
				configOp(cfgEnvBC),
				envOp(patch.ActionRemove, "A", nil),
				envOp(patch.ActionUpdate, "B", str("20")),
				envOp(patch.ActionAdd, "C", str("3")),
			},
			edit(base, cfgEnvBC, nil),
		},
		{
			"environment_variable before the config it restates",
			[]patch.Op{envOp(patch.ActionAdd, "C", str("3")), configOp(cfgEnvBC)},
			edit(base, cfgEnvBC, nil),
		},
		{
			"environment_variable alone agreeing with the current config",
			[]patch.Op{envOp(patch.ActionUpdate, "A", str("1"))},
			edit(base, cfgEnvAB, nil),
		},
		{
			"model code and config together",
			[]patch.Op{codeText(patch.ActionUpdate, "model/model.py", "v2"), configOp(cfgPlain), envOp(patch.ActionRemove, "A", nil), envOp(patch.ActionRemove, "B", nil)},
			edit(base, cfgPlain, map[string]*string{"model/model.py": hashOf("v2")}),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := nextBase()
			before := describe(prev)
			got, err := patch.Next(prev, overWire(t, tt.ops))
			require.NoError(t, err, "want the ops accepted")
			requirePointEqual(t, tt.want, got, "Next: want (expected) vs got (actual)")
			assert.Equal(t, before, describe(prev), "Next must not change the point it starts from")
			assert.NoError(t, got.Validate(), "a point Next gives: want it valid")
		})
	}
}

func TestNext_RefusesInconsistentOps(t *testing.T) {
	tooMany := make([]patch.Op, patch.MaxOps+1)
	for i := range tooMany {
		tooMany[i] = code(patch.ActionAdd, "d")
	}
	tests := []struct {
		name      string
		prev      patch.Point // zero: nextBase()
		ops       []patch.Op
		wantField string
		wantMsg   string
	}{
		{"no ops", patch.Point{}, nil, "patch_ops", "no operations"},
		{"too many ops", patch.Point{}, tooMany, "patch_ops", "more than"},

		{"ADD of an existing file", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "model/model.py", "x")}, "patch_ops[0].path", "exists"},
		{"ADD of an existing directory", patch.Point{}, []patch.Op{code(patch.ActionAdd, "model")}, "patch_ops[0].path", "exists"},
		{"ADD of a file where a directory is", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "data", "x")}, "patch_ops[0].path", "exists"},
		{"UPDATE of a missing file", patch.Point{}, []patch.Op{codeText(patch.ActionUpdate, "model/missing.py", "x")}, "patch_ops[0].path", "not a file of the package"},
		{"UPDATE of a directory", patch.Point{}, []patch.Op{codeText(patch.ActionUpdate, "model", "x")}, "patch_ops[0].path", "not a file of the package"},
		{"UPDATE without content", patch.Point{}, []patch.Op{code(patch.ActionUpdate, "model/model.py")}, "patch_ops[0].content", "required for UPDATE"},
		{"REMOVE of a missing path", patch.Point{}, []patch.Op{code(patch.ActionRemove, "nope.py")}, "patch_ops[0].path", "not in the package"},
		{"REMOVE of what an earlier REMOVE took", patch.Point{}, []patch.Op{code(patch.ActionRemove, "model"), code(patch.ActionRemove, "model/util.py")}, "patch_ops[1].path", "not in the package"},
		{"REMOVE with content", patch.Point{}, []patch.Op{codeText(patch.ActionRemove, "model/util.py", "x")}, "patch_ops[0].content", "takes no content"},
		{"directory missing", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "nodir/x.py", "x")}, "patch_ops[0].path", `directory "nodir" does not exist`},
		{"directory is a file", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "model-extra.py/x.py", "x")}, "patch_ops[0].path", `directory "model-extra.py" does not exist`},
		{"directory removed earlier in the patch", patch.Point{}, []patch.Op{code(patch.ActionRemove, "model"), codeText(patch.ActionAdd, "model/new.py", "x")}, "patch_ops[1].path", `directory "model" does not exist`},
		{"UPDATE in a missing directory", patch.Point{}, []patch.Op{codeText(patch.ActionUpdate, "nodir/x.py", "x")}, "patch_ops[0].path", `directory "nodir" does not exist`},
		{"content and content_bytes both", patch.Point{}, []patch.Op{{Type: patch.TypeModelCode, Action: patch.ActionAdd, Path: "n.py", Content: str("a"), ContentBytes: []byte("a")}}, "patch_ops[0].content", "not both"},
		{"unknown model_code action", patch.Point{}, []patch.Op{codeText("RENAME", "model/util.py", "x")}, "patch_ops[0].action", "must be ADD, UPDATE or REMOVE"},
		{"path with ..", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "../x.py", "x")}, "patch_ops[0].path", "clean path"},
		{"absolute path", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "/x.py", "x")}, "patch_ops[0].path", "relative"},
		{"empty path", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "", "x")}, "patch_ops[0].path", "empty path"},
		{"config.yaml as model code", patch.Point{}, []patch.Op{codeText(patch.ActionUpdate, "config.yaml", cfgPlain)}, "patch_ops[0].path", "config.yaml"},
		{"a path a package never holds", patch.Point{}, []patch.Op{code(patch.ActionAdd, "__pycache__")}, "patch_ops[0].path", "never part of a package"},

		{"unknown type", patch.Point{}, []patch.Op{{Type: "code", Action: patch.ActionAdd, Path: "x.py", Content: str("x")}}, "patch_ops[0].type", `unknown type "code"`},
		{"missing type", patch.Point{}, []patch.Op{{Action: patch.ActionAdd, Path: "x.py", Content: str("x")}}, "patch_ops[0].type", "required"},

		{"config ADD", patch.Point{}, []patch.Op{{Type: patch.TypeConfig, Action: patch.ActionAdd, Content: str(cfgPlain)}}, "patch_ops[0].action", "UPDATE"},
		{"config without content", patch.Point{}, []patch.Op{{Type: patch.TypeConfig, Action: patch.ActionUpdate}}, "patch_ops[0].content", "required"},
		{"config that is not YAML", patch.Point{}, []patch.Op{configOp("model_name: [unclosed\n")}, "patch_ops[0].content", "not valid YAML"},
		{"config that breaks a rule", patch.Point{}, []patch.Op{configOp("description: no name\n")}, "patch_ops[0].content", "model_name: is required"},
		{"hot_reload on a config op", patch.Point{}, []patch.Op{hot(configOp(cfgPlain))}, "patch_ops[0].hot_reload", "cannot be hot reloaded"},

		{"hot_reload on an environment_variable op", patch.Point{}, []patch.Op{configOp(cfgEnvBC), hot(envOp(patch.ActionAdd, "C", str("3")))}, "patch_ops[1].hot_reload", "cannot be hot reloaded"},
		{"environment_variable with a bad name", patch.Point{}, []patch.Op{envOp(patch.ActionAdd, "1A", str("x"))}, "patch_ops[0].name", "variable name"},
		{"environment_variable without a name", patch.Point{}, []patch.Op{envOp(patch.ActionRemove, "", nil)}, "patch_ops[0].name", "variable name"},
		{"environment_variable with an unknown action", patch.Point{}, []patch.Op{envOp("SET", "A", str("1"))}, "patch_ops[0].action", "must be ADD, UPDATE or REMOVE"},
		{"environment_variable ADD without a value", patch.Point{}, []patch.Op{configOp(cfgEnvBC), envOp(patch.ActionAdd, "C", nil)}, "patch_ops[1].value", "required for ADD"},
		{"environment_variable value disagrees with the config", patch.Point{}, []patch.Op{configOp(cfgEnvBC), envOp(patch.ActionAdd, "C", str("4"))}, "patch_ops[1].value", "disagrees"},
		{"environment_variable ADD of a name the config lacks", patch.Point{}, []patch.Op{configOp(cfgEnvBC), envOp(patch.ActionAdd, "D", str("1"))}, "patch_ops[1].value", "disagrees"},
		{"environment_variable REMOVE of a name the config still sets", patch.Point{}, []patch.Op{configOp(cfgEnvBC), envOp(patch.ActionRemove, "B", nil)}, "patch_ops[1].name", "still sets"},
		{"environment_variable alone disagreeing with the current config", patch.Point{}, []patch.Op{envOp(patch.ActionUpdate, "A", str("9"))}, "patch_ops[0].value", "disagrees"},
		{"environment_variable on a point whose config does not parse", patch.Point{ContentHashes: map[string]*string{}, Config: "model_name: [unclosed\n"}, []patch.Op{envOp(patch.ActionRemove, "A", nil)}, "patch_ops", "config.yaml"},

		{"the error names the op at fault", patch.Point{}, []patch.Op{codeText(patch.ActionAdd, "ok.py", "x"), codeText(patch.ActionAdd, "ok.py", "y")}, "patch_ops[1].path", "exists"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			prev := tt.prev
			if prev.ContentHashes == nil {
				prev = nextBase()
			}
			before := describe(prev)
			got, err := patch.Next(prev, tt.ops)
			require.Error(t, err, "want an error at %s, got the point %s", tt.wantField, describe(got))
			var pe *patch.Error
			require.True(t, errors.As(err, &pe), "want a *patch.Error, got %T: %v", err, err)
			assert.Equal(t, tt.wantField, pe.Field, "want the error to name %s, got %q", tt.wantField, err)
			assert.Contains(t, pe.Message, tt.wantMsg, "want the message to say %q, got %q", tt.wantMsg, pe.Message)
			assert.Equal(t, pe.Field+": "+pe.Message, err.Error(), "Error(): want field: message")
			assert.Equal(t, patch.Point{}, got, "on error: want the zero point")
			assert.Equal(t, before, describe(prev), "a refused patch must not change the point it starts from")
		})
	}
}

// diffBase is the tree the Diff tests start from.
var diffBase = tree{
	"config.yaml":           cfgEnvAB,
	"model/model.py":        "v1\n",
	"model/util/helpers.py": "h\n",
	"model/util/deep/d.py":  "d\n",
	"weights/w.bin":         binary,
	"README.md":             "r\n",
	"empty/":                "",
	"link.py":               symlinkPrefix + "model/model.py",
}

func TestDiff_ThenNextReproducesTheTarget(t *testing.T) {
	tests := []struct {
		name string
		to   tree
		hot  bool
	}{
		{"a file added", diffBase.with(tree{"NOTES.md": "n\n"}), true},
		{"an empty file added", diffBase.with(tree{"model/__init__.py": ""}), true},
		{"nested directories added", diffBase.with(tree{"new/a/b/c.py": "c\n", "new/a/empty/": "", "new/top.py": "t\n"}), false},
		{"nested directories removed", diffBase.with(tree{"model/util/helpers.py": "-", "model/util/deep/d.py": "-"}), true},
		{"an empty directory removed", diffBase.with(tree{"empty/": "-"}), false},
		{"a text file updated", diffBase.with(tree{"model/model.py": "v2\n"}), true},
		{"a binary file updated", diffBase.with(tree{"weights/w.bin": binary + "\xff"}), false},
		{"a binary file added", diffBase.with(tree{"weights/w2.bin": "\x89PNG\r\n\x1a\n\x00"}), false},
		{"a text file becomes binary", diffBase.with(tree{"README.md": "\xff\xfe"}), false},
		{"a file becomes a directory", diffBase.with(tree{"README.md": "-", "README.md/inner.md": "i\n", "README.md/deeper/x.md": "x\n"}), true},
		{"a directory becomes a file", diffBase.with(tree{"model/util/helpers.py": "-", "model/util/deep/d.py": "-", "model/util": "now a file\n"}), true},
		{"an empty directory becomes an empty file", diffBase.with(tree{"empty/": "-", "empty": ""}), false},
		{"a file becomes an empty directory", diffBase.with(tree{"README.md": "-", "README.md/": ""}), false},
		{"the config changes its variables", diffBase.with(tree{"config.yaml": cfgEnvBC}), false},
		{"the config drops all variables", diffBase.with(tree{"config.yaml": cfgPlain}), false},
		{"the config changes without its variables", diffBase.with(tree{"config.yaml": cfgEnvAB + "# comment\n"}), false},
		{"a symlink removed", diffBase.with(tree{"link.py": "-"}), true},
		{"a symlink replaced by a file", diffBase.with(tree{"link.py": "now a file\n"}), true},
		{"everything at once", diffBase.with(tree{
			"config.yaml":           cfgEnvBC,
			"model/model.py":        "v3\n",
			"model/util/helpers.py": "-",
			"model/util/deep/d.py":  "-",
			"model/util":            "file\n",
			"README.md":             "-",
			"README.md/x.md":        "x\n",
			"weights/w.bin":         "-",
			"weights/w.bin/part0":   binary,
			"empty/":                "-",
			"empty/full.py":         "f\n",
			"new/a/b/c.py":          "c\n",
		}), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromDir, toDir := diffBase.write(t), tt.to.write(t)
			from, to := pointOf(t, fromDir), pointOf(t, toDir)
			ops, err := patch.Diff(from, to, toDir, tt.hot)
			require.NoError(t, err, "Diff")
			require.NotEmpty(t, ops, "a change: want operations")

			got, err := patch.Next(from, overWire(t, ops))
			require.NoError(t, err, "Next of Diff's ops (sent as JSON): want them accepted; ops: %+v", ops)
			requirePointEqual(t, to, got, "Next(from, Diff(from, to)): want to (expected), got (actual)")

			checkDiffShape(t, from, to, ops, tt.hot)
		})
	}
}

// checkDiffShape checks what Diff promises beyond reaching the target: removals first and
// only the topmost, writes in path order, binary files as content_bytes, hot_reload on model
// code only.
func checkDiffShape(t *testing.T, from, to patch.Point, ops []patch.Op, hotReload bool) {
	t.Helper()
	removed := map[string]bool{}
	seenWrite := false
	lastWrite := ""
	for i, op := range ops {
		switch op.Type {
		case patch.TypeModelCode:
			assert.Equal(t, hotReload, op.HotReload, "ops[%d] %s %s: want hot_reload %v", i, op.Action, op.Path, hotReload)
			if op.Action == patch.ActionRemove {
				assert.False(t, seenWrite, "ops[%d] REMOVE %s after a write: want removals first", i, op.Path)
				for dir := filepath.Dir(op.Path); dir != "."; dir = filepath.Dir(dir) {
					assert.False(t, removed[dir], "ops[%d] REMOVE %s under REMOVE %s: want only the topmost", i, op.Path, dir)
				}
				removed[op.Path] = true
				continue
			}
			seenWrite = true
			assert.Less(t, lastWrite, op.Path, "ops[%d] %s: want writes in path order", i, op.Path)
			lastWrite = op.Path
			if h := to.ContentHashes[op.Path]; h != nil {
				data := op.Data()
				assert.Equal(t, *h, patch.SumHex(data), "ops[%d] %s: want the content of the target", i, op.Path)
				if !utf8.Valid(data) {
					assert.Nil(t, op.Content, "ops[%d] %s is binary: want content_bytes, not content", i, op.Path)
				} else {
					assert.Nil(t, op.ContentBytes, "ops[%d] %s is text: want content, not content_bytes", i, op.Path)
				}
			}
		case patch.TypeConfig, patch.TypeEnvironment:
			assert.False(t, op.HotReload, "ops[%d] %s: want hot_reload false", i, op.Type)
			assert.NotEqual(t, from.Config, to.Config, "ops[%d] %s though the config did not change", i, op.Type)
		default:
			t.Errorf("ops[%d]: unexpected type %q", i, op.Type)
		}
	}
}

func TestDiff_OpsOfATypeChangeAndAConfigChange(t *testing.T) {
	to := diffBase.with(tree{
		"model/util/helpers.py": "-", "model/util/deep/d.py": "-", "model/util": "file\n",
		"config.yaml": cfgEnvBC,
	})
	fromDir, toDir := diffBase.write(t), to.write(t)
	ops, err := patch.Diff(pointOf(t, fromDir), pointOf(t, toDir), toDir, true)
	require.NoError(t, err)
	want := []patch.Op{
		hot(code(patch.ActionRemove, "model/util")),
		hot(codeText(patch.ActionAdd, "model/util", "file\n")),
		configOp(cfgEnvBC),
		envOp(patch.ActionRemove, "A", nil),
		envOp(patch.ActionUpdate, "B", str("20")),
		envOp(patch.ActionAdd, "C", str("3")),
	}
	assert.Equal(t, want, ops, "Diff: want (expected) vs got (actual)")
}

func TestDiff_NothingChangedGivesNoOps(t *testing.T) {
	a, b := diffBase.write(t), diffBase.write(t)
	ops, err := patch.Diff(pointOf(t, a), pointOf(t, b), b, true)
	require.NoError(t, err)
	assert.Empty(t, ops, "two equal trees: want no operations")
}

func TestDiff_ChangedSymlinkIsUnpatchable(t *testing.T) {
	tests := []struct {
		name string
		to   tree
	}{
		{"a symlink pointed elsewhere", diffBase.with(tree{"link.py": symlinkPrefix + "README.md"})},
		{"a symlink added", diffBase.with(tree{"link2.py": symlinkPrefix + "README.md"})},
		{"a file replaced by a symlink", diffBase.with(tree{"README.md": symlinkPrefix + "model/model.py"})},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fromDir, toDir := diffBase.write(t), tt.to.write(t)
			ops, err := patch.Diff(pointOf(t, fromDir), pointOf(t, toDir), toDir, false)
			assert.ErrorIs(t, err, patch.ErrUnpatchable, "want ErrUnpatchable, got %v (ops %+v)", err, ops)
		})
	}
}

func TestDiff_ConfigThatDoesNotParseIsAnError(t *testing.T) {
	to := diffBase.with(tree{"config.yaml": "model_name: [unclosed\n"})
	fromDir, toDir := diffBase.write(t), to.write(t)
	_, err := patch.Diff(pointOf(t, fromDir), pointOf(t, toDir), toDir, false)
	require.Error(t, err, "a target config.yaml that does not parse: want an error")
	assert.Contains(t, err.Error(), "config.yaml", "want the error to name config.yaml, got %v", err)
}

func TestDiff_FileChangedAfterThePointIsAnError(t *testing.T) {
	to := diffBase.with(tree{"model/model.py": "v2\n"})
	fromDir, toDir := diffBase.write(t), to.write(t)
	toPoint := pointOf(t, toDir)
	require.NoError(t, os.WriteFile(filepath.Join(toDir, "model", "model.py"), []byte("v3\n"), 0o644))
	_, err := patch.Diff(pointOf(t, fromDir), toPoint, toDir, false)
	require.Error(t, err, "a file that changed after its point was taken: want an error")
	assert.Contains(t, err.Error(), "model/model.py", "want the error to name the file, got %v", err)
}
