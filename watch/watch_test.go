package watch

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/modelplane/modelplane/patch"
)

func TestDescribe_NamesWhatAPatchChanges(t *testing.T) {
	v := "x"
	cfg := "model_name: m\n"
	code := func(action, path string) patch.Op {
		return patch.Op{Type: patch.TypeModelCode, Action: action, Path: path}
	}
	for _, tt := range []struct {
		name string
		ops  []patch.Op
		want string
	}{
		{"one file", []patch.Op{code(patch.ActionUpdate, "model/model.py")}, "model/model.py"},
		{"added and removed", []patch.Op{code(patch.ActionRemove, "model/old.py"), code(patch.ActionAdd, "model/new.py")}, "-model/old.py, +model/new.py"},
		{"config with its variables", []patch.Op{
			{Type: patch.TypeConfig, Action: patch.ActionUpdate, Content: &cfg},
			{Type: patch.TypeEnvironment, Action: patch.ActionUpdate, Name: "B", Value: &v},
			{Type: patch.TypeEnvironment, Action: patch.ActionRemove, Name: "A"},
		}, "config.yaml (A, B)"},
		{"many files", []patch.Op{code(patch.ActionUpdate, "a"), code(patch.ActionUpdate, "b"), code(patch.ActionUpdate, "c"),
			code(patch.ActionUpdate, "d"), code(patch.ActionUpdate, "e"), code(patch.ActionUpdate, "f"), code(patch.ActionUpdate, "g")},
			"a, b, c, d, e, and 2 more"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, describe(tt.ops))
		})
	}
}

func TestIgnored_SkipsWhatIsNeverPartOfAPackage(t *testing.T) {
	root := "/pkg"
	for path, want := range map[string]bool{
		"model/model.py":                  false,
		"config.yaml":                     false,
		"model/.model.py.swp":             true,
		"model/model.py~":                 true,
		"model/__pycache__/model.pyc":     true,
		".git/index":                      true,
		"data/weights.bin":                false,
		"model/.#model.py":                true,
		"packages/lib/__pycache__/x.pyc":  true,
		"packages/lib/helpers/helpers.py": false,
	} {
		assert.Equal(t, want, ignored(root, filepath.Join(root, path)), path)
	}
}
