package check

import (
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"testing"
)

var (
	// deployDir is the repository's deploy/ folder; repoRoot the repository.
	deployDir, repoRoot = func() (string, string) {
		_, file, _, _ := runtime.Caller(0)
		d := filepath.Dir(filepath.Dir(file))
		return d, filepath.Dir(d)
	}()
)

// documentedEnv is every environment variable README.md names: what the artifacts set for
// modelplane must be among them, so that a misspelt name (read by nothing) fails.
func documentedEnv(t *testing.T) map[string]bool {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, m := range regexp.MustCompile(`\b(?:MODELPLANE|TEMPORAL)_[A-Z0-9_]+\b|\bDATABASE_URL\b`).FindAllString(string(b), -1) {
		names[m] = true
	}
	return names
}

// ownEnv says whether name is one of modelplane's variables (rather than PostgreSQL's,
// Temporal's image's, NVIDIA's or OpenTelemetry's).
func ownEnv(name string) bool {
	return regexp.MustCompile(`^(MODELPLANE_|TEMPORAL_(ADDRESS|NAMESPACE)$|DATABASE_URL$)`).MatchString(name)
}

func TestEnv_EveryModelplaneVariableTheComposeFileSetsIsDocumented(t *testing.T) {
	documented := documentedEnv(t)
	p := loadCompose(t, nil, []string{"s3"}, "compose.yaml", "compose.gpu.yaml")
	for name, s := range p.Services {
		if name == "postgres" || name == "temporal" || name == "temporal-ui" || name == "seaweedfs" {
			continue
		}
		for k := range s.Environment {
			if ownEnv(k) && !documented[k] {
				t.Errorf("%s sets %s, which README.md does not name: modelplane reads no such variable", name, k)
			}
		}
	}
}
