package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"github.com/modelplane/modelplane"
	"github.com/modelplane/modelplane/agent/agentproto"
	"github.com/modelplane/modelplane/apikey"
	"github.com/modelplane/modelplane/client"
	"github.com/modelplane/modelplane/devstack"
	"github.com/modelplane/modelplane/internal/pgtest"
	"github.com/modelplane/modelplane/store"
)

// The dashboard's browser tests share one stack and one headless Chromium, each test in a
// browser context of its own (its own cookies): starting either takes seconds. TestMain
// closes both once every test of the package has run.

var shared struct {
	once    sync.Once
	err     error
	stack   *devstack.Stack
	dir     string
	token   string
	drop    func()
	browser context.Context
	cancel  []context.CancelFunc
}

func TestMain(m *testing.M) {
	code := m.Run()
	closeShared()
	os.Exit(code)
}

func closeShared() {
	for i := len(shared.cancel) - 1; i >= 0; i-- {
		shared.cancel[i]()
	}
	if shared.stack != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		defer cancel()
		_ = shared.stack.Close(ctx)
	}
	if shared.drop != nil {
		shared.drop()
	}
	if shared.dir != "" {
		_ = os.RemoveAll(shared.dir)
	}
}

// chromiumPath finds a Chromium to drive; the tests fail without one.
func chromiumPath() (string, error) {
	for _, name := range []string{"chromium", "chromium-browser", "google-chrome", "headless-shell"} {
		if p, err := exec.LookPath(name); err == nil {
			return p, nil
		}
	}
	return "", errors.New("no Chromium found: the dashboard's browser tests need one; install it with `apt-get install -y chromium` (.ci/run does)")
}

func startShared() error {
	chrome, err := chromiumPath()
	if err != nil {
		return err
	}
	shared.dir, err = os.MkdirTemp("", "e2e-dashboard-")
	if err != nil {
		return err
	}
	dbURL, drop, err := pgtest.Create("e2e")
	if err != nil {
		return err
	}
	shared.drop = drop
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	shared.stack, err = devstack.Start(ctx, devstack.Options{DataDir: shared.dir, Listen: "127.0.0.1:0", GPUProfile: "h200",
		Postgres: devstack.PostgresOptions{DatabaseURL: dbURL}})
	if err != nil {
		return err
	}
	token, err := os.ReadFile(filepath.Join(shared.dir, devstack.NodeTokenFile))
	if err != nil {
		return err
	}
	shared.token = strings.TrimSpace(string(token))
	opts := append(chromedp.DefaultExecAllocatorOptions[:], chromedp.ExecPath(chrome), chromedp.NoSandbox,
		chromedp.WindowSize(1440, 1000), chromedp.Flag("disable-dev-shm-usage", true))
	alloc, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	browser, cancelBrowser := chromedp.NewContext(alloc)
	shared.cancel = append(shared.cancel, cancelAlloc, cancelBrowser)
	if err := chromedp.Do(browser); err != nil { // starts the browser
		return fmt.Errorf("starting %s: %w", chrome, err)
	}
	shared.browser = browser
	return nil
}

// page is one test's browser tab, signed in or not, with the shared stack's harness.
type page struct {
	t    *testing.T
	h    *harness
	ctx  context.Context
	shot int
}

// dashboardHarness returns a harness of the shared stack for t.
func dashboardHarness(t *testing.T) *harness {
	t.Helper()
	shared.once.Do(func() { shared.err = startShared() })
	require.NoError(t, shared.err, "starting the dashboard tests' stack and browser")
	s := shared.stack
	return &harness{t: t, stack: s, api: client.New(s.APIURL, s.NewAPIKey), key: s.NewAPIKey, dir: shared.dir,
		token: shared.token, agent: agentproto.NewClient(s.AgentURL, shared.token)}
}

// newPage opens a tab in a browser context of its own (no cookies of other tests).
func newPage(t *testing.T, h *harness) *page {
	t.Helper()
	ctx, cancel := chromedp.NewContext(shared.browser, chromedp.WithNewBrowserContext())
	t.Cleanup(cancel)
	// The first run opens the tab, which lives as long as the context it ran on: this one,
	// not the bounded ones each action runs on.
	require.NoError(t, chromedp.Do(ctx), "opening a tab")
	return &page{t: t, h: h, ctx: ctx}
}

// run runs browser actions with a bound, failing the test with what was being done.
func (p *page) run(what string, actions ...chromedp.Action[chromedp.Void]) {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	require.NoError(p.t, chromedp.Do(ctx, actions...), "%s", what)
}

// get runs one browser action that answers a value.
func get[T any](p *page, what string, action chromedp.Action[T]) T {
	p.t.Helper()
	ctx, cancel := context.WithTimeout(p.ctx, 60*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, action)
	require.NoError(p.t, err, "%s", what)
	return v
}

// attr reads an attribute of the first element that matches the CSS selector.
func (p *page) attr(sel, name string) string {
	p.t.Helper()
	return get(p, "attribute "+name+" of "+sel, chromedp.AttributeValue(chromedp.CSS(sel), name)).Value
}

// screenshotDir is where each browser test writes a full-page screenshot of each page it
// visits: MODELPLANE_SCREENSHOTS, or screenshots/ at the repository's root.
func screenshotDir() string {
	if d := os.Getenv("MODELPLANE_SCREENSHOTS"); d != "" {
		return d
	}
	return filepath.Join("..", "screenshots")
}

// screenshot writes the page as it is now to <dir>/<test>-<n>-<name>.png.
func (p *page) screenshot(name string) {
	p.t.Helper()
	png := get(p, "screenshot "+name, chromedp.FullScreenshot(100))
	dir := screenshotDir()
	require.NoError(p.t, os.MkdirAll(dir, 0o755))
	p.shot++
	file := filepath.Join(dir, fmt.Sprintf("%s-%02d-%s.png", p.t.Name(), p.shot, name))
	require.NoError(p.t, os.WriteFile(file, png, 0o644))
}

func (p *page) url(path string) string { return p.h.stack.APIURL + path }

// signIn signs in with key through the form, starting from path (the sign-in sends the
// browser back there).
func (p *page) signIn(key, path string) {
	p.t.Helper()
	p.run("open "+path, chromedp.Navigate(p.url(path)), chromedp.WaitVisible(chromedp.ID("api_key")))
	p.screenshot("signin")
	p.run("sign in", chromedp.SendKeys(chromedp.ID("api_key"), key), chromedp.Submit(chromedp.ID("signin")),
		chromedp.WaitVisible(chromedp.CSS(`body:not([data-page="signin"]) #main h1`)))
	loc := get(p, "location", chromedp.Location())
	require.Equal(p.t, p.url(path), loc, "sign-in goes back to the page asked for")
}

// text reads the text of the first element that matches sel ("" when there is none).
func (p *page) text(sel string) string {
	p.t.Helper()
	return get(p, "read "+sel, chromedp.Evaluate[string](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return e ? e.textContent : ""; })()`, sel)))
}

// waitText waits until the text of sel satisfies ok, and returns it.
func (p *page) waitText(sel string, within time.Duration, ok func(string) bool, what string) string {
	p.t.Helper()
	deadline := time.Now().Add(within)
	last := ""
	for time.Now().Before(deadline) {
		if last = p.text(sel); ok(last) {
			return last
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.screenshot("timeout")
	p.t.Fatalf("%s: %s never did within %s; last text %q", what, sel, within, last)
	return ""
}

func contains(s string) func(string) bool {
	return func(t string) bool { return strings.Contains(t, s) }
}

// click clicks the element that matches the CSS selector.
func (p *page) click(sel string) {
	p.t.Helper()
	p.run("click "+sel, chromedp.WaitVisible(chromedp.CSS(sel)), chromedp.Click(chromedp.CSS(sel)))
}

// fetch runs fetch(path, init) in the page (with its cookie) and returns the status and body.
func (p *page) fetch(path, init string) (int, string) {
	p.t.Helper()
	out := get(p, "fetch "+path, chromedp.Evaluate[[]any](fmt.Sprintf(`fetch(%q, %s).then(async r => [r.status, await r.text()])`, path, init),
		chromedp.EvalAwaitPromise))
	return int(out[0].(float64)), out[1].(string)
}

// dashboardModel makes a model whose production serves a test model deployment, and
// returns them.
func dashboardModel(t *testing.T, h *harness, name string) (modelID, first string) {
	t.Helper()
	modelID, first = h.createModel(name, testmodelArchive(t, h, "--response-bytes", "1"), false)
	h.promote(modelID, "production", first)
	return modelID, first
}

func TestDashboard_SignInShowsModelsAndTheProductionDeployment(t *testing.T) {
	h := dashboardHarness(t)
	modelID, first := dashboardModel(t, h, "dash-signin")
	p := newPage(t, h)
	p.signIn(h.key, "/")
	row := "#model-" + modelID
	p.waitText(row+" .production", 10*time.Second, contains("deployment-"), "the models list shows the production deployment")
	p.waitText(row+" .status-cell", 10*time.Second, contains("ACTIVE"), "the models list shows the status")
	p.screenshot("models")

	p.click(row + " th a")
	p.waitText("#env-production .current", 10*time.Second, func(s string) bool { return strings.HasPrefix(s, "deployment-") }, "the model page shows production's deployment")
	href := p.attr(`#env-production .current a`, "data-deployment-id")
	require.Equal(t, first, href, "production serves the first deployment")
	p.waitText("#dep-"+first+" .env-cell", 10*time.Second, contains("production"), "the deployments table says which environment")
	p.screenshot("model")

	p.click("#dep-" + first + " th a")
	p.waitText("#deployment-name", 10*time.Second, contains("ACTIVE"), "the deployment page shows its status")
	p.waitText("#replicas-table tbody", 10*time.Second, contains("READY"), "the deployment page lists its replica with its node and state")
	p.waitText("#charts", 15*time.Second, contains("Requests per second"), "the deployment page draws its charts")
	p.waitText("#queue", 10*time.Second, contains("queued"), "the deployment page shows the async queue")
	p.screenshot("deployment")

	p.run("nodes", chromedp.Navigate(p.url("/nodes")))
	p.waitText("#nodes", 10*time.Second, contains("H200"), "the nodes page lists the GPUs")
	p.screenshot("nodes")

	p.run("keys", chromedp.Navigate(p.url("/keys")))
	p.waitText("#keys-table tbody", 10*time.Second, func(s string) bool { return !strings.Contains(s, "Loading") }, "the keys page lists keys")
	p.run("create a key", chromedp.SendKeys(chromedp.ID("key-name"), "from-the-dashboard"))
	p.click(`#key-form button[type="submit"]`)
	key := p.waitText("#new-key-value", 10*time.Second, contains("mp_"), "the new key is shown once")
	p.waitText("#keys-table tbody", 10*time.Second, contains("from-the-dashboard"), "the new key is listed")
	p.screenshot("keys")
	id, _, err := apikey.Parse(strings.TrimSpace(key))
	require.NoError(t, err, "the key shown: %q", key)
	code, _ := h.send(http.DefaultClient, "Api-Key "+strings.TrimSpace(key), http.MethodGet, "/v1/models", nil)
	require.Equal(t, http.StatusOK, code, "the key created in the dashboard (%s) works", id)
}

// secondDeploymentPage makes a model named name with a second deployment, and signs a page
// in on the model's page once that deployment's row shows it ACTIVE; row selects the row.
func secondDeploymentPage(t *testing.T, h *harness, name string) (p *page, modelID, first, second, row string) {
	t.Helper()
	modelID, first = dashboardModel(t, h, name)
	second = h.newDeployment(modelID, testmodelArchive(t, h, "--response-bytes", "2"))
	p = newPage(t, h)
	p.signIn(h.key, "/m/"+modelID)
	row = "#dep-" + second
	p.waitText(row+" .status-cell", 10*time.Second, contains("ACTIVE"), "the second deployment is listed")
	return p, modelID, first, second, row
}

func TestDashboard_PromoteWithARampThenCancelPutsTrafficBack(t *testing.T) {
	h := dashboardHarness(t)
	p, modelID, first, _, row := secondDeploymentPage(t, h, "dash-ramp")
	p.run("choose a 20 s ramp to production",
		chromedp.SetValue(chromedp.CSS(row+` select[name="env"]`), "production"),
		chromedp.Click(chromedp.CSS(row+` input[name="ramp"]`)),
		chromedp.SetValue(chromedp.CSS(row+` input[name="ramp_up_duration_seconds"]`), "20"))
	p.click(row + ` form.promote button[type="submit"]`)

	// The percentage rises while the page polls: at least two different shares seen.
	var seen []int
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && len(seen) < 2 {
		if t := strings.TrimSpace(p.text("#env-production .percent")); t != "" && !p.hidden("#env-production .promo") {
			if n, err := strconv.Atoi(t); err == nil && n > 0 && (len(seen) == 0 || n > seen[len(seen)-1]) {
				seen = append(seen, n)
				if len(seen) == 1 {
					p.screenshot("ramping")
				}
			}
		}
		time.Sleep(150 * time.Millisecond)
	}
	require.GreaterOrEqual(t, len(seen), 2, "the page showed the candidate's share rising; saw %v", seen)
	require.Less(t, seen[len(seen)-1], 100)
	p.screenshot("ramped")

	p.click(`#env-production [data-action="cancel_promotion"]`)
	p.waitText("#notice", 30*time.Second, contains("Cancel (production): done"), "the cancel is answered")
	p.waitHidden("#env-production .promo", 30*time.Second)
	p.screenshot("cancelled")
	current := p.attr(`#env-production .current a`, "data-deployment-id")
	require.Equal(t, first, current, "after the cancel production shows the first deployment again")
	e, err := h.api.Environment(context.Background(), modelID, "production")
	require.NoError(t, err)
	require.Nil(t, e.InProgressPromotion)
	require.Equal(t, first, e.CurrentDeployment.ID, "traffic is back on the first deployment")
}

// hidden says whether the element that matches sel is hidden (or absent).
func (p *page) hidden(sel string) bool {
	p.t.Helper()
	return get(p, "hidden "+sel, chromedp.Evaluate[bool](fmt.Sprintf(`(() => { const e = document.querySelector(%q); return !e || e.closest("[hidden]") !== null; })()`, sel)))
}

func (p *page) waitHidden(sel string, within time.Duration) {
	p.t.Helper()
	deadline := time.Now().Add(within)
	for time.Now().Before(deadline) {
		if p.hidden(sel) {
			return
		}
		time.Sleep(200 * time.Millisecond)
	}
	p.screenshot("timeout")
	p.t.Fatalf("%s was still shown after %s", sel, within)
}

func TestDashboard_DeactivateActivateAndDeleteThroughTheConfirmation(t *testing.T) {
	h := dashboardHarness(t)
	p, modelID, _, second, row := secondDeploymentPage(t, h, "dash-lifecycle")

	p.click(row + ` [data-action="deactivate"]`)
	p.waitText(row+" .status-cell", 90*time.Second, contains("INACTIVE"), "deactivating shows INACTIVE")
	p.screenshot("deactivated")
	p.click(row + ` [data-action="activate"]`)
	p.waitText(row+" .status-cell", 90*time.Second, contains("ACTIVE"), "activating shows ACTIVE again")
	p.waitText(row+" .status-cell", 90*time.Second, func(s string) bool { return strings.Contains(s, "ACTIVE") && !strings.Contains(s, "INACTIVE") }, "activating shows ACTIVE")
	h.waitStatus(modelID, second, modelplane.DeploymentActive)
	p.screenshot("activated")

	p.click(row + ` [data-action="delete"]`)
	p.run("the confirmation opens", chromedp.WaitVisible(chromedp.ID("confirm")))
	require.Contains(t, p.text("#confirm-text"), second, "the confirmation names the deployment")
	p.screenshot("confirm-delete")
	p.click(`#confirm-ok`)
	p.waitText("#deployments-table tbody", 30*time.Second, func(s string) bool { return !strings.Contains(s, second) }, "the deleted deployment leaves the table")
	p.screenshot("deleted")
	code, _ := h.call(http.MethodGet, "/v1/models/"+modelID+"/deployments/"+second, nil)
	require.Equal(t, http.StatusNotFound, code, "the deployment is deleted")
}

func TestDashboard_AutoscalingFormShowsTheAPIsMessageNextToTheField(t *testing.T) {
	h := dashboardHarness(t)
	modelID, _ := dashboardModel(t, h, "dash-form")
	p := newPage(t, h)
	p.signIn(h.key, "/m/"+modelID)
	p.waitText("#env-production .current", 10*time.Second, contains("deployment-"), "the model page is drawn")
	p.run("max_replica 0", chromedp.WaitVisible(chromedp.ID("as-max_replica")), chromedp.SetValue(chromedp.ID("as-max_replica"), "0"))
	p.click(`#autoscaling-form button[type="submit"]`)
	shown := p.waitText("#as-max_replica-error", 10*time.Second, func(s string) bool { return s != "" }, "the field's error")
	p.screenshot("form-error")

	code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/environments/production",
		map[string]any{"autoscaling_settings": map[string]any{"max_replica": 0}})
	require.Equal(t, http.StatusBadRequest, code)
	want := body["error"].(map[string]any)["message"].(string)
	require.Equal(t, want, shown, "the API's own message is shown next to max_replica")
	invalid := p.attr(`#as-max_replica`, "aria-invalid")
	require.Equal(t, "true", invalid)
}

func TestDashboard_ModelPageShowsTheScheduleInForce(t *testing.T) {
	h := dashboardHarness(t)
	modelID, _ := dashboardModel(t, h, "dash-schedule")
	code, body := h.call(http.MethodPatch, "/v1/models/"+modelID+"/environments/production", map[string]any{
		"autoscaling_schedule_settings": map[string]any{"timezone": "UTC", "schedules": []any{map[string]any{
			"name": "all-week", "enabled": true, "cadence": "HOURLY", "start_minute": 0, "end_minute": 0,
			"weekdays": []string{"SUNDAY", "MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY", "SATURDAY"},
			"autoscaling_settings": map[string]any{"min_replica": 1, "max_replica": 2, "autoscaling_window": nil,
				"scale_down_delay": nil, "concurrency_target": nil, "target_utilization_percentage": nil,
				"target_in_flight_tokens": nil, "max_scale_down_rate": nil},
		}}}})
	require.Equal(t, http.StatusOK, code, "%v", body)
	p := newPage(t, h)
	p.signIn(h.key, "/m/"+modelID)
	p.waitText("#env-production .schedule", 10*time.Second, contains("Schedule all-week in force: 1 to 2 replicas"),
		"production's card names the schedule in force and its replica bounds")
}

func TestDashboard_AKeyOfAnotherWorkspaceSeesNothing(t *testing.T) {
	h := dashboardHarness(t)
	modelID, first := dashboardModel(t, h, "dash-tenant")
	ctx := context.Background()
	db, err := store.Open(ctx, h.stack.Postgres.URL)
	require.NoError(t, err)
	defer db.Close()
	ws, _, err := store.EnsureWorkspace(ctx, db, "other-"+modelplane.NewID(6))
	require.NoError(t, err)
	_, otherKey, err := apikey.Create(ctx, db, ws.ID, "other", true)
	require.NoError(t, err)

	p := newPage(t, h)
	p.signIn(otherKey, "/")
	p.waitText("#models-table tbody", 10*time.Second, contains("No models yet"), "another workspace lists no models")
	p.screenshot("models")
	p.run("the model's page", chromedp.Navigate(p.url("/m/"+modelID)))
	p.waitText("#notice", 10*time.Second, contains("not found"), "the model is not found")
	p.screenshot("model")
	for _, path := range []string{"/v1/models/" + modelID, "/v1/models/" + modelID + "/deployments/" + first,
		"/v1/models/" + modelID + "/environments/production"} {
		code, _ := p.fetch(path, "{}")
		require.Equal(t, http.StatusNotFound, code, "GET %s with another workspace's session", path)
	}
	code, _ := p.fetch("/v1/models/"+modelID+"/deployments/"+first+"/deactivate",
		`{method: "POST", headers: {"X-CSRF-Token": document.querySelector('meta[name="csrf-token"]').content}}`)
	require.Equal(t, http.StatusNotFound, code, "deactivating another workspace's deployment")
}

func TestDashboard_AChangeWithoutTheCSRFTokenIsRefused(t *testing.T) {
	h := dashboardHarness(t)
	modelID, first := dashboardModel(t, h, "dash-csrf")
	p := newPage(t, h)
	p.signIn(h.key, "/m/"+modelID)
	code, body := p.fetch("/v1/models/"+modelID+"/deployments/"+first+"/deactivate", `{method: "POST"}`)
	require.Equal(t, http.StatusForbidden, code, body)
	require.Contains(t, body, "missing CSRF token")
	require.Contains(t, body, "X-CSRF-Token")
	p.screenshot("model")
	d, err := h.api.Deployment(context.Background(), modelID, first)
	require.NoError(t, err)
	require.Equal(t, modelplane.DeploymentActive, d.Status, "the refused change changed nothing")
}

// logMarker is a line the test model writes to stderr as it starts.
var logMarker = regexp.MustCompile(`test model starting`)

func TestDashboard_LogsFollowShowsLinesTheModelWrites(t *testing.T) {
	h := dashboardHarness(t)
	modelID, first := dashboardModel(t, h, "dash-logs")
	p := newPage(t, h)
	p.signIn(h.key, "/m/"+modelID+"/d/"+first)
	p.waitText("#logs", 30*time.Second, logMarker.MatchString, "the logs panel shows the model's own lines")
	p.screenshot("logs")
	// A replica started while the page follows shows its lines too.
	before := strings.Count(p.text("#logs"), "test model starting")
	rs, err := h.agent.Replicas(context.Background())
	require.NoError(t, err)
	for _, r := range rs {
		if r.DeploymentID == first && r.State == modelplane.ReplicaReady {
			code, body := h.call(http.MethodDelete, "/v1/models/"+modelID+"/deployments/"+first+"/replicas/"+r.ID, nil)
			require.Equal(t, http.StatusOK, code, "%v", body)
			break
		}
	}
	p.waitText("#logs", 90*time.Second, func(s string) bool { return strings.Count(s, "test model starting") > before },
		"following, the panel shows the new replica's lines")
	p.screenshot("logs-followed")
}

func TestDashboard_UsageShowsTheTableAndTheCSV(t *testing.T) {
	h := dashboardHarness(t)
	dashboardModel(t, h, "dash-usage")
	p := newPage(t, h)
	p.signIn(h.key, "/usage")
	p.waitText("#usage-totals", 15*time.Second, contains("GPU hours"), "the usage page shows totals")
	p.waitText("#usage-table", 15*time.Second, contains("dash-usage"), "the model's replica is counted")
	p.screenshot("usage")
	href := p.attr(`#usage-csv`, "href")
	require.Contains(t, href, "format=csv")
	code, body := p.fetch(href, "{}")
	require.Equal(t, http.StatusOK, code, body)
	require.Contains(t, body, "gpu_seconds", "the CSV has its header")
}

func TestDashboard_ModelPageShowsTheShadowAndItsAgreement(t *testing.T) {
	h := dashboardHarness(t)
	modelID, shadow, before := shadowedModel(t, h, "dash-shadow")
	shadowPredictions(t, h, modelID, 5)
	n := before + 5
	p := newPage(t, h)
	p.signIn(h.key, "/m/"+modelID)
	p.waitText("#env-production .shadow-percent", 10*time.Second, contains("100"), "the environment card shows the shadow's percent")
	require.Equal(t, shadow, p.attr("#env-production .shadow-deployment a", "data-deployment-id"), "the card names the shadow deployment")
	p.waitText("#env-production .shadow-agreement", 15*time.Second, contains(fmt.Sprintf("100.0%% agreement over %d compared copies", n)),
		"the card shows the copies' agreement")
	figures := p.waitText("#env-production .shadow-figures", 10*time.Second, contains(fmt.Sprintf("%d copied: %d equal, 0 different, 0 errors; 0 dropped", n, n)),
		"the card shows the counts")
	require.Regexp(t, `p99 [0-9.]+ ms serving, [0-9.]+ ms shadow`, figures, "the card shows both p99s")
	p.screenshot("shadow")
}
