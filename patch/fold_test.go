package patch_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane/patch"
)

// foldStep is one patch of a run: the tree it leads to, and its ops (Diff's when nil).
type foldStep struct {
	name string
	to   tree
	ops  []patch.Op
}

// foldRun is a run of patches that removes and re-adds paths, changes files into
// directories and back, and changes the config, across patches and within one.
func foldRun() (tree, []foldStep) {
	t0 := diffBase.with(tree{
		"model/__pycache__/model.cpython-312.pyc": "bytecode, never part of the point",
		"new/old.py": "o\n",
	})
	t1 := t0.with(tree{
		"model/model.py":       "v2\n",
		"new/a/b/c.py":         "c\n",
		"config.yaml":          cfgEnvBC,
		"model/util/deep/d.py": "-",
	})
	t2 := t1.with(tree{
		"new/old.py":          "-",
		"new/a/b/c.py":        "-",
		"README.md":           "-",
		"README.md/x.md":      "x\n",
		"weights/w.bin":       binary + "v2",
		"model/util/deep/":    "", // the directory stays, empty
		"model/util/deep/e/":  "",
		"model/util/deep/e/f": "f\n",
	})
	t3 := t2.with(tree{
		"new":                  "new is a file now\n",
		"model/util/deep/e/":   "-",
		"model/util/deep/e/f":  "-",
		"model/util/deep/d.py": "d again, different\n",
	})
	t4 := t3.with(tree{
		"README.md/x.md": "-",
		"README.md":      "r, a file again\n",
		"new":            "-",
		"new/z.py":       "z\n",
		"config.yaml":    cfgPlain,
	})
	t5 := t4.with(tree{
		"empty/":         "-",
		"empty":          "",
		"model/model.py": "v3\n",
		"blank.py":       "",
		"weights/w.bin":  "\xff\xfe",
	})
	// Within one patch: the model directory removed and re-added with one file.
	t6 := t5.with(tree{
		"model/model.py":        "v-final\n",
		"model/util/helpers.py": "-",
		"model/util/deep/d.py":  "-",
		"model/util/deep/":      "-",
	})
	return t0, []foldStep{
		{"update, add nested, config, remove a file", t1, nil},
		{"remove a directory's files, file becomes a directory, binary update", t2, nil},
		{"remove then re-add as a file, re-add a removed file", t3, nil},
		{"directory becomes a file again, file becomes a directory again, config", t4, nil},
		{"empty directory becomes an empty file", t5, nil},
		{"remove and re-add a directory in one patch", t6, []patch.Op{
			code(patch.ActionRemove, "model"),
			code(patch.ActionAdd, "model"),
			hot(codeText(patch.ActionAdd, "model/model.py", "v-final\n")),
		}},
	}
}

// runOps computes each step's ops, checking that Next takes each point to the next, and
// returns the points (points[0] the start) and the ops of each step.
func runOps(t *testing.T, start tree, steps []foldStep) ([]patch.Point, [][]patch.Op) {
	t.Helper()
	points := []patch.Point{pointOf(t, start.write(t))}
	var ops [][]patch.Op
	for i, s := range steps {
		dir := s.to.write(t)
		want := pointOf(t, dir)
		stepOps := s.ops
		if stepOps == nil {
			var err error
			stepOps, err = patch.Diff(points[i], want, dir, true)
			require.NoError(t, err, "step %d (%s): Diff", i+1, s.name)
		}
		got, err := patch.Next(points[i], stepOps)
		require.NoError(t, err, "step %d (%s): Next", i+1, s.name)
		requirePointEqual(t, want, got, "step %d (%s): Next gives the step's tree", i+1, s.name)
		points = append(points, got)
		ops = append(ops, stepOps)
	}
	return points, ops
}

func concat(ops [][]patch.Op) []patch.Op {
	var out []patch.Op
	for _, o := range ops {
		out = append(out, o...)
	}
	return out
}

func TestFold_CarriedOutOnTheOriginalTreeGivesTheFinalPoint(t *testing.T) {
	start, steps := foldRun()
	points, ops := runOps(t, start, steps)
	for k := 1; k <= len(steps); k++ {
		t.Run(fmt.Sprintf("first %d patches", k), func(t *testing.T) {
			set := overWire(t, patch.Fold(concat(ops[:k])))
			dir := start.write(t)
			applyFileSet(t, dir, set)
			requirePointEqual(t, points[k], pointOf(t, dir),
				"Fold of patches 1..%d on the original tree: want the point after patch %d (expected), got (actual); set %+v", k, k, set)
		})
	}
}

func TestFold_CarriedOutAfterAnEarlierPrefixGivesTheSameTree(t *testing.T) {
	start, steps := foldRun()
	points, ops := runOps(t, start, steps)
	final := points[len(points)-1]
	trees := []tree{start}
	for _, s := range steps {
		trees = append(trees, s.to)
	}
	// The fold of patches from+1..n, carried out on the tree after any of patches from..n.
	for from := 0; from < len(steps); from++ {
		set := patch.Fold(concat(ops[from:]))
		for at := from; at <= len(steps); at++ {
			t.Run(fmt.Sprintf("fold of patches %d-%d on the tree after patch %d", from+1, len(steps), at), func(t *testing.T) {
				dir := trees[at].write(t)
				applyFileSet(t, dir, set)
				requirePointEqual(t, final, pointOf(t, dir),
					"want the final point (expected), got (actual); set %+v", set)
			})
		}
	}
}

func TestFold_Sets(t *testing.T) {
	tests := []struct {
		name string
		ops  []patch.Op
		want patch.FileSet
	}{
		{"no ops", nil, patch.FileSet{}},
		{
			"remove then re-add in one patch",
			[]patch.Op{code(patch.ActionRemove, "d"), code(patch.ActionAdd, "d"), codeText(patch.ActionAdd, "d/f", "x")},
			patch.FileSet{Remove: []string{"d"}, Dirs: []string{"d"}, Files: []patch.File{{Path: "d/f", Content: []byte("x")}}},
		},
		{
			"what was added and then removed in the run",
			[]patch.Op{code(patch.ActionAdd, "n"), codeText(patch.ActionAdd, "n/f", "x"), code(patch.ActionRemove, "n")},
			patch.FileSet{Remove: []string{"n"}},
		},
		{
			"a later UPDATE wins",
			[]patch.Op{codeText(patch.ActionUpdate, "a.py", "1"), codeBytes(patch.ActionUpdate, "a.py", []byte{0xff})},
			patch.FileSet{Files: []patch.File{{Path: "a.py", Content: []byte{0xff}}}},
		},
		{
			"a file becomes a directory",
			[]patch.Op{code(patch.ActionRemove, "a"), code(patch.ActionAdd, "a"), codeText(patch.ActionAdd, "a/b", "")},
			patch.FileSet{Remove: []string{"a"}, Dirs: []string{"a"}, Files: []patch.File{{Path: "a/b", Content: []byte{}}}},
		},
		{
			"config written as config.yaml; variables restate it",
			[]patch.Op{configOp(cfgEnvAB), envOp(patch.ActionAdd, "A", str("1")), configOp(cfgPlain), envOp(patch.ActionRemove, "A", nil)},
			patch.FileSet{Files: []patch.File{{Path: "config.yaml", Content: []byte(cfgPlain)}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := patch.Fold(tt.ops)
			assert.Equal(t, tt.want, got, "Fold: want (expected) vs got (actual)")
			assert.Equal(t, len(tt.want.Remove)+len(tt.want.Dirs)+len(tt.want.Files) == 0, got.Empty(), "Empty()")
			assert.NoError(t, got.Check(), "a folded set: want it to pass Check")
		})
	}
}

func TestFileSet_Bytes(t *testing.T) {
	s := patch.FileSet{Files: []patch.File{{Path: "a", Content: []byte("abc")}, {Path: "b", Content: []byte("de")}}}
	assert.Equal(t, int64(5), s.Bytes(), "want the sum of the files' sizes")
}

func TestFileSet_CheckRefusesPathsOutsideThePackage(t *testing.T) {
	tests := []struct {
		name string
		set  patch.FileSet
		want string
	}{
		{"remove with ..", patch.FileSet{Remove: []string{"../x"}}, `remove "../x"`},
		{"dir absolute", patch.FileSet{Dirs: []string{"/etc"}}, `dir "/etc"`},
		{"file in .git", patch.FileSet{Files: []patch.File{{Path: ".git/config"}}}, `file ".git/config"`},
		{"removing config.yaml", patch.FileSet{Remove: []string{"config.yaml"}}, `remove "config.yaml"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.set.Check()
			require.Error(t, err, "want an error containing %q, got none", tt.want)
			assert.Contains(t, err.Error(), tt.want, "want %q, got %q", tt.want, err)
		})
	}
	assert.NoError(t, patch.FileSet{Files: []patch.File{{Path: "config.yaml"}}}.Check(), "writing config.yaml: want accepted")
}
