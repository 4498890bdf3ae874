package check

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// stage is one FROM ... AS name of the Dockerfile, with its instructions (continuations
// joined).
type stage struct {
	name  string
	lines []string
}

func dockerfileStages(t *testing.T) map[string]stage {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	text := regexp.MustCompile(`\\\n\s*`).ReplaceAllString(string(b), " ")
	stages := map[string]stage{}
	cur := ""
	for _, l := range strings.Split(text, "\n") {
		l = strings.TrimSpace(l)
		if l == "" || strings.HasPrefix(l, "#") {
			continue
		}
		if f := strings.Fields(l); strings.EqualFold(f[0], "FROM") {
			if len(f) != 4 || !strings.EqualFold(f[2], "AS") {
				t.Fatalf("Dockerfile: want FROM IMAGE AS NAME, got %q", l)
			}
			cur = f[3]
			stages[cur] = stage{name: cur}
			continue
		}
		if cur != "" {
			s := stages[cur]
			s.lines = append(s.lines, l)
			stages[cur] = s
		}
	}
	return stages
}

func has(s stage, pattern string) bool {
	re := regexp.MustCompile(pattern)
	for _, l := range s.lines {
		if re.MatchString(l) {
			return true
		}
	}
	return false
}

func TestDockerfile_BuildsAStaticNonRootImageAndACgoAgentImage(t *testing.T) {
	st := dockerfileStages(t)
	for _, name := range []string{"build", "modelplane", "agent"} {
		if _, ok := st[name]; !ok {
			t.Fatalf("Dockerfile: want a stage %q, got %v", name, st)
		}
	}
	gomod, err := os.ReadFile(filepath.Join(repoRoot, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	goVersion := regexp.MustCompile(`(?m)^go (\S+)$`).FindSubmatch(gomod)[1]
	if !has(st["build"], `GOTOOLCHAIN=go`+regexp.QuoteMeta(string(goVersion))+`\b`) {
		t.Errorf("build stage: want GOTOOLCHAIN=go%s, go.mod's", goVersion)
	}
	if !has(st["build"], `^RUN CGO_ENABLED=0 go build .* -o /out/static/modelplane \./cmd/modelplane$`) ||
		!has(st["build"], `^RUN CGO_ENABLED=1 go build .* -o /out/cgo/modelplane \./cmd/modelplane$`) {
		t.Errorf("build stage: want a static (CGO_ENABLED=0) and a cgo build of ./cmd/modelplane, got %q", st["build"].lines)
	}
	m := st["modelplane"]
	if !has(m, `^COPY --from=build /out/static/modelplane /usr/local/bin/modelplane$`) || !has(m, `^USER 65532:65532$`) {
		t.Errorf("modelplane stage: want the static binary run as 65532, got %q", m.lines)
	}
	a := st["agent"]
	if !has(a, `^COPY --from=build /out/cgo/modelplane /usr/local/bin/modelplane$`) || has(a, `^USER `) {
		t.Errorf("agent stage: want the cgo binary run as root, got %q", a.lines)
	}
	if !has(a, `python3 python3-venv python3-pip`) {
		t.Errorf("agent stage: want python3 with venv and pip for python-runtime models, got %q", a.lines)
	}
	for _, s := range []stage{m, a} {
		if !has(s, `^ENTRYPOINT \["/usr/local/bin/modelplane"\]$`) {
			t.Errorf("%s stage: want ENTRYPOINT [\"/usr/local/bin/modelplane\"], got %q", s.name, s.lines)
		}
	}
}
