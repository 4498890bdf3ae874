package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/url"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"
	"github.com/labstack/echo/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"
	enumspb "go.temporal.io/api/enums/v1"
	"go.yaml.in/yaml/v3"

	"github.com/modelplane/modelplane/api"
	"github.com/modelplane/modelplane/modelpkg"
	"github.com/modelplane/modelplane/patch"
	"github.com/modelplane/modelplane/workflows/contract"
)

// specFile is Baseten's public OpenAPI spec, as published; testdata/README.md says where from.
const specFile = "testdata/baseten-openapi.json"

// servedSpecRoutes are the operations of Baseten's spec that api/server.go serves, by the
// spec's method and path. The spec lists the development and production forms of some
// deployment routes as operations of their own; modelplane serves them through
// {deployment_id}, so they are here too. TestConformance_FlowAgainstBasetenSpec fails unless
// its flow sends every one of them, and TestConformance_RouteTableMatchesTheServer fails when
// this table and the server disagree.
var servedSpecRoutes = []string{
	"GET /v1/models",
	"POST /v1/models",
	"POST /v1/prepare_model_upload",
	"GET /v1/models/{model_id}",
	"DELETE /v1/models/{model_id}",
	"GET /v1/models/{model_id}/audit_logs",
	"GET /v1/models/{model_id}/deployments",
	"POST /v1/models/{model_id}/deployments",
	"GET /v1/models/{model_id}/deployments/development",
	"GET /v1/models/{model_id}/deployments/production",
	"GET /v1/models/{model_id}/deployments/{deployment_id}",
	"PATCH /v1/models/{model_id}/deployments/{deployment_id}",
	"DELETE /v1/models/{model_id}/deployments/{deployment_id}",
	"PATCH /v1/models/{model_id}/deployments/development/autoscaling_settings",
	"PATCH /v1/models/{model_id}/deployments/production/autoscaling_settings",
	"PATCH /v1/models/{model_id}/deployments/{deployment_id}/autoscaling_settings",
	"PATCH /v1/models/{model_id}/deployments/{deployment_id}/request_backpressure_settings",
	"POST /v1/models/{model_id}/deployments/development/promote",
	"POST /v1/models/{model_id}/deployments/{deployment_id}/promote",
	"POST /v1/models/{model_id}/deployments/development/activate",
	"POST /v1/models/{model_id}/deployments/production/activate",
	"POST /v1/models/{model_id}/deployments/{deployment_id}/activate",
	"POST /v1/models/{model_id}/deployments/development/deactivate",
	"POST /v1/models/{model_id}/deployments/production/deactivate",
	"POST /v1/models/{model_id}/deployments/{deployment_id}/deactivate",
	"POST /v1/models/{model_id}/deployments/development/retry",
	"POST /v1/models/{model_id}/deployments/production/retry",
	"POST /v1/models/{model_id}/deployments/{deployment_id}/retry",
	"GET /v1/models/{model_id}/deployments/{deployment_id}/download",
	"GET /v1/models/{model_id}/deployments/{deployment_id}/config",
	"POST /v1/models/{model_id}/deployments/{deployment_id}/patches",
	"GET /v1/models/{model_id}/deployments/{deployment_id}/patches/state",
	"POST /v1/models/{model_id}/deployments/{deployment_id}/patches/sync",
	"GET /v1/models/{model_id}/deployments/{deployment_id}/metrics",
	"GET /v1/models/{model_id}/deployments/{deployment_id}/logs",
	"POST /v1/models/{model_id}/deployments/{deployment_id}/logs",
	"DELETE /v1/models/{model_id}/deployments/{deployment_id}/replicas/{replica_id}",
	"GET /v1/models/{model_id}/environments",
	"POST /v1/models/{model_id}/environments",
	"GET /v1/models/{model_id}/environments/{env_name}",
	"PATCH /v1/models/{model_id}/environments/{env_name}",
	"DELETE /v1/models/{model_id}/environments/{env_name}",
	"GET /v1/models/{model_id}/environments/{env_name}/metrics",
	"GET /v1/models/{model_id}/environments/{env_name}/logs",
	"POST /v1/models/{model_id}/environments/{env_name}/activate",
	"POST /v1/models/{model_id}/environments/{env_name}/deactivate",
	"POST /v1/models/{model_id}/environments/{env_name}/promote",
	"POST /v1/models/{model_id}/environments/{env_name}/cancel_promotion",
	"POST /v1/models/{model_id}/environments/{env_name}/pause_promotion",
	"POST /v1/models/{model_id}/environments/{env_name}/resume_promotion",
	"POST /v1/models/{model_id}/environments/{env_name}/force_cancel_promotion",
	"POST /v1/models/{model_id}/environments/{env_name}/force_roll_forward_promotion",
	"GET /v1/instance_types",
	"GET /v1/audit_logs",
	"GET /v1/api_keys",
	"POST /v1/api_keys",
	"DELETE /v1/api_keys/{api_key_prefix}",
	"GET /v1/secrets",
	"POST /v1/secrets",
	"DELETE /v1/secrets/{secret_name}",
}

// modelplaneRoutes are the /v1 routes of api/server.go that Baseten's spec does not have:
// modelplane's own additions, in echo's form. docs/API.md documents each.
// TestConformance_RouteTableMatchesTheServer fails when a route the server serves is in
// neither this table nor the spec, so an addition is made on purpose.
var modelplaneRoutes = []string{
	"GET /v1/models/:model_id/deployments/:deployment_id/build_logs",
	"GET /v1/models/:model_id/deployments/:deployment_id/patches",
	"POST /v1/models/:model_id/deployments/:deployment_id/keep_awake",
	"GET /v1/models/:model_id/environments/:env/shadow",
	"GET /v1/nodes",
	"GET /v1/webhook_secret",
	"POST /v1/webhook_secret",
	"GET /v1/quotas",
	"GET /v1/usage",
	"POST /v1/archives",
	"PUT /v1/uploads/:key",
	"GET /v1/downloads/:token",
}

// loadSpec reads the spec with its servers replaced by serverURL, and a router over it.
func loadSpec(t *testing.T, serverURL string) (*openapi3.T, routers.Router) {
	t.Helper()
	b, err := os.ReadFile(specFile)
	require.NoError(t, err)
	doc, err := openapi3.NewLoader().LoadFromData(b)
	require.NoError(t, err, "loading %s", specFile)
	doc.Servers = openapi3.Servers{{URL: serverURL}}
	router, err := gorillamux.NewRouter(doc)
	require.NoError(t, err)
	return doc, router
}

// requestSchema is the JSON request body schema of the spec's operation "METHOD /path".
func requestSchema(t *testing.T, doc *openapi3.T, route string) *openapi3.Schema {
	t.Helper()
	method, path, _ := strings.Cut(route, " ")
	item := doc.Paths.Value(path)
	require.NotNil(t, item, "the spec has no path %s", path)
	op := item.GetOperation(method)
	require.NotNil(t, op, "the spec has no operation %s", route)
	require.NotNil(t, op.RequestBody, "%s takes no request body in the spec", route)
	mt := op.RequestBody.Value.Content.Get("application/json")
	require.NotNil(t, mt, "%s takes no JSON body in the spec", route)
	return mt.Schema.Value
}

// generic turns v into what encoding/json decodes JSON into (maps, slices, float64, ...).
func generic(v any) any {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err)
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		panic(err)
	}
	return out
}

// branch picks the alternative of a oneOf or anyOf schema that a value takes: the one its
// discriminator names, else the first non-null one the value validates against.
func branch(s *openapi3.Schema, v any) *openapi3.Schema {
	alts := s.OneOf
	if len(alts) == 0 {
		alts = s.AnyOf
	}
	if len(alts) == 0 {
		return nil
	}
	if d := s.Discriminator; d != nil {
		if obj, ok := v.(map[string]any); ok {
			if kind, ok := obj[d.PropertyName].(string); ok {
				if ref, ok := d.Mapping[kind]; ok {
					for _, a := range alts {
						if a.Ref == ref.Ref {
							return a.Value
						}
					}
				}
			}
		}
	}
	for _, a := range alts {
		if a.Value == nil || (a.Value.Type != nil && a.Value.Type.Is("null")) {
			continue
		}
		if a.Value.VisitJSON(v, openapi3.EnableJSONSchema2020()) == nil {
			return a.Value
		}
	}
	return nil
}

// uncovered lists the properties of s, at any depth, that body does not send: a new field in
// the spec must be sent by the flow too. A null value covers its property; the properties
// under it are not asked for.
func uncovered(s *openapi3.Schema, body any, at string) []string {
	if s == nil || body == nil {
		return nil
	}
	if b := branch(s, body); b != nil {
		return uncovered(b, body, at)
	}
	var out []string
	switch v := body.(type) {
	case map[string]any:
		for name, p := range s.Properties {
			where := strings.TrimPrefix(at+"."+name, ".")
			pv, ok := v[name]
			if !ok {
				out = append(out, where)
				continue
			}
			out = append(out, uncovered(p.Value, pv, where)...)
		}
	case []any:
		if s.Items != nil {
			for i, e := range v {
				out = append(out, uncovered(s.Items.Value, e, fmt.Sprintf("%s[%d]", at, i))...)
			}
		}
	}
	sort.Strings(out)
	return out
}

// least is the smallest value schema s allows: an object of its required properties only.
func least(s *openapi3.Schema) any {
	if s == nil {
		return nil
	}
	for _, a := range append(append([]*openapi3.SchemaRef(nil), s.AnyOf...), s.OneOf...) {
		if a.Value != nil && (a.Value.Type == nil || !a.Value.Type.Is("null")) {
			s = a.Value
			break
		}
	}
	switch {
	case s.Type == nil:
		return nil
	case s.Type.Is("object"):
		out := map[string]any{}
		for _, name := range s.Required {
			out[name] = least(s.Properties[name].Value)
		}
		return out
	case s.Type.Is("array"):
		return []any{}
	case s.Type.Is("boolean"):
		return false
	case s.Type.Is("integer"), s.Type.Is("number"):
		return 0
	case s.Type.Is("string"):
		return ""
	}
	return nil
}

// without takes the field at path (dotted) out of body, or puts the least value in its place
// when the schema requires it. It reports false when there is nothing left to take away.
func without(s *openapi3.Schema, body map[string]any, path string) bool {
	parts := strings.Split(path, ".")
	obj := body
	for _, p := range parts[:len(parts)-1] {
		if b := branch(s, obj); b != nil {
			s = b
		}
		next, ok := obj[p].(map[string]any)
		if !ok || s.Properties[p] == nil {
			return false
		}
		obj, s = next, s.Properties[p].Value
	}
	if b := branch(s, obj); b != nil {
		s = b
	}
	last := parts[len(parts)-1]
	v, ok := obj[last]
	if !ok {
		return false
	}
	for _, r := range s.Required {
		if r == last {
			min := generic(least(s.Properties[last].Value))
			if reflect.DeepEqual(generic(v), min) {
				return false
			}
			obj[last] = min
			return true
		}
	}
	delete(obj, last)
	return true
}

// failure is one way a route did not answer as the spec says.
type failure struct {
	route   string
	status  int // 0: the request, not the response
	problem string
}

// conformance is an http.RoundTripper that checks every request to a route of the spec,
// and its answer, against the spec, and counts the requests to modelplane's own routes.
type conformance struct {
	router routers.Router
	own    *echo.Echo // modelplane's routes, to name the ones the spec does not have
	base   http.RoundTripper
	opts   *openapi3filter.Options

	mu        sync.Mutex
	exercised map[string]int
	ours      map[string]int
	validated int
	failures  map[failure]int
	order     []failure
}

func newConformance(router routers.Router) *conformance {
	return &conformance{
		router: router,
		own:    api.New(api.Deps{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)}),
		base:   http.DefaultTransport,
		opts: &openapi3filter.Options{
			MultiError:            true,
			IncludeResponseStatus: true,
			SkipSettingDefaults:   true,
			AuthenticationFunc: func(_ context.Context, in *openapi3filter.AuthenticationInput) error {
				h := in.RequestValidationInput.Request.Header.Get("Authorization")
				if strings.HasPrefix(h, "Bearer ") || strings.HasPrefix(h, "Api-Key ") {
					return nil
				}
				return errors.New("no Authorization: Bearer <key> (or Api-Key <key>) header")
			},
		},
		exercised: map[string]int{},
		ours:      map[string]int{},
		failures:  map[failure]int{},
	}
}

func (c *conformance) fail(f failure) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failures[f] == 0 {
		c.order = append(c.order, f)
	}
	c.failures[f]++
}

// ownRoute names a request to a route that is not the spec's by modelplane's route.
func (c *conformance) ownRoute(req *http.Request) string {
	ctx := c.own.NewContext(nil, nil)
	c.own.Router().Find(req.Method, req.URL.Path, ctx)
	if ctx.Path() == "" {
		return req.Method + " " + req.URL.Path
	}
	return req.Method + " " + ctx.Path()
}

func (c *conformance) RoundTrip(req *http.Request) (*http.Response, error) {
	if !strings.HasPrefix(req.URL.Path, "/v1/") {
		return c.base.RoundTrip(req) // inference, health: not the management API
	}
	var body []byte
	if req.Body != nil {
		var err error
		if body, err = io.ReadAll(req.Body); err != nil {
			return nil, err
		}
		req.Body.Close()
		req.Body = io.NopCloser(bytes.NewReader(body))
	}
	route, params, err := c.router.FindRoute(req)
	if err != nil {
		name := c.ownRoute(req)
		c.mu.Lock()
		c.ours[name]++
		c.mu.Unlock()
		return c.base.RoundTrip(req)
	}
	name := req.Method + " " + route.Path
	check := req.Clone(req.Context())
	check.Body = io.NopCloser(bytes.NewReader(body))
	in := &openapi3filter.RequestValidationInput{Request: check, PathParams: params, Route: route, Options: c.opts}
	if err := openapi3filter.ValidateRequest(req.Context(), in); err != nil {
		for _, p := range problems(err) {
			c.fail(failure{route: name, problem: "request: " + p})
		}
	}
	resp, err := c.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	answer, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(answer))
	out := &openapi3filter.ResponseValidationInput{RequestValidationInput: in, Status: resp.StatusCode,
		Header: resp.Header, Options: c.opts}
	out.SetBodyBytes(answer)
	verr := openapi3filter.ValidateResponse(req.Context(), out)
	c.mu.Lock()
	c.exercised[name]++
	c.validated++
	c.mu.Unlock()
	if verr != nil {
		ps := problems(verr)
		if route.Operation.Responses.Status(resp.StatusCode) == nil {
			// Say what the spec answers, and what modelplane said instead.
			ps = []string{fmt.Sprintf("status %d, the spec answers %s", resp.StatusCode,
				strings.Join(slices.Sorted(maps.Keys(route.Operation.Responses.Map())), ", "))}
			if resp.StatusCode/100 != 2 {
				ps[0] += ": " + errorMessage(answer)
			} else if route.Operation.Responses.Status(http.StatusOK) != nil {
				// A success under another status: its body is still checked as the spec's 200.
				as200 := *out
				as200.Status = http.StatusOK
				if err := openapi3filter.ValidateResponse(req.Context(), &as200); err != nil {
					for _, p := range problems(err) {
						ps = append(ps, "as the spec's 200 answer: "+p)
					}
				}
			}
		}
		for _, p := range ps {
			c.fail(failure{route: name, status: resp.StatusCode, problem: p})
		}
	}
	return resp, nil
}

// errorMessage is the message of modelplane's error body, or the body itself.
func errorMessage(body []byte) string {
	var e struct {
		Error struct {
			Message string `json:"message"`
		} `json:"error"`
	}
	if json.Unmarshal(body, &e) == nil && e.Error.Message != "" {
		return e.Error.Message
	}
	s := strings.TrimSpace(string(body))
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// problems says what a validation error found, one line per problem.
func problems(err error) []string {
	if me, ok := err.(openapi3.MultiError); ok {
		var out []string
		for _, e := range me {
			out = append(out, problems(e)...)
		}
		return out
	}
	var re *openapi3filter.RequestError
	if errors.As(err, &re) {
		where := "body"
		if re.Parameter != nil {
			where = re.Parameter.In + " parameter " + re.Parameter.Name
		}
		if re.Err == nil {
			return []string{where + ": " + re.Reason}
		}
		var out []string
		for _, p := range problems(re.Err) {
			out = append(out, where+": "+p)
		}
		return out
	}
	var rs *openapi3filter.ResponseError
	if errors.As(err, &rs) {
		if rs.Err == nil {
			return []string{rs.Reason}
		}
		return problems(rs.Err)
	}
	var se *openapi3.SchemaError
	if errors.As(err, &se) {
		// The JSON Schema 2020 validator, which 3.1 documents use, lists its findings in
		// the reason, one "- at '<pointer>': <what>" a line.
		var out []string
		for _, m := range schemaFinding.FindAllStringSubmatch(se.Reason, -1) {
			at := m[1]
			if at == "" {
				at = "/"
			}
			out = append(out, at+": "+m[2])
		}
		if len(out) > 0 {
			return out
		}
		return []string{"/" + strings.Join(se.JSONPointer(), "/") + ": " + se.Reason}
	}
	return []string{strings.Join(strings.Fields(err.Error()), " ")}
}

var schemaFinding = regexp.MustCompile(`(?m)^\s*- at '([^']*)': (.*)$`)

// summary is the one line the run ends with, and the failures, one a line.
func (c *conformance) summary() (string, []string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	line := fmt.Sprintf("conformance: %d routes checked, %d responses validated, %d failing",
		len(c.exercised), c.validated, len(c.order))
	var lines []string
	for _, f := range c.order {
		status := "request"
		if f.status != 0 {
			status = strconv.Itoa(f.status)
		}
		n := ""
		if k := c.failures[f]; k > 1 {
			n = fmt.Sprintf(" (%d times)", k)
		}
		lines = append(lines, fmt.Sprintf("  %s [%s] %s%s", f.route, status, f.problem, n))
	}
	return line, lines
}

// flow drives the management API as a Baseten client would, through a conformance.
type flow struct {
	t    *testing.T
	h    *harness
	c    *conformance
	doc  *openapi3.T
	http *http.Client
}

// do sends a JSON request with the key as a Bearer token and decodes the answer.
func (f *flow) do(method, path string, body any) (int, map[string]any) {
	f.t.Helper()
	return f.h.send(f.http, "Bearer "+f.h.key, method, path, body)
}

var (
	fieldRefused = regexp.MustCompile(`^([a-z_][a-z0-9_]*(?:\.[a-z_][a-z0-9_]*)*): `)
	unknownField = regexp.MustCompile(`unknown field "([a-z_][a-z0-9_]*)"`)
)

// send sends body, a request body of the spec's operation route, after checking that it
// sends every property of the operation's schema. When modelplane refuses a field it names,
// the refusal stays on the list of failures and the request is sent again without that field
// (or with the least value the spec allows, for a required one), so that the flow can go on.
// It returns the answer and the body last sent.
func (f *flow) send(route, path string, body map[string]any) (int, map[string]any, map[string]any) {
	f.t.Helper()
	schema := requestSchema(f.t, f.doc, route)
	body = generic(body).(map[string]any)
	if missing := uncovered(schema, body, ""); len(missing) > 0 {
		f.t.Errorf("%s: the flow's body leaves out the spec's %s", route, strings.Join(missing, ", "))
	}
	method, _, _ := strings.Cut(route, " ")
	tried := map[string]bool{}
	for {
		code, out := f.do(method, path, body)
		if code/100 == 2 {
			return code, out, body
		}
		msg := str(out, "error", "message")
		m := fieldRefused.FindStringSubmatch(msg)
		if m == nil {
			return code, out, body
		}
		field := m[1]
		if u := unknownField.FindStringSubmatch(msg); u != nil {
			field += "." + u[1] // a field of the object the message names
		}
		if tried[field] || !without(schema, body, field) {
			return code, out, body
		}
		tried[field] = true
		f.t.Logf("%s %s: %d %q; sending it again without %s", method, path, code, msg, field)
	}
}

// ok stops the flow when a step it needs did not succeed.
func (f *flow) ok(code int, out map[string]any, what string) {
	f.t.Helper()
	if code/100 != 2 {
		f.t.Fatalf("%s: %d %v; the flow cannot go on", what, code, out)
	}
}

// expect records a difference between what the spec means and what a route did.
func (f *flow) expect(route string, status int, cond bool, format string, args ...any) {
	if !cond {
		f.c.fail(failure{route: route, status: status, problem: fmt.Sprintf(format, args...)})
	}
}

// sent reports whether the body last sent still has the field at the dotted path.
func sent(body map[string]any, path string) bool {
	parts := strings.Split(path, ".")
	var v any = body
	for _, p := range parts {
		obj, ok := v.(map[string]any)
		if !ok {
			return false
		}
		if v, ok = obj[p]; !ok {
			return false
		}
	}
	return true
}

func dig(v any, path ...string) any {
	for _, p := range path {
		obj, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = obj[p]
	}
	return v
}

func str(v any, path ...string) string {
	s, _ := dig(v, path...).(string)
	return s
}

// deploymentRoute is the spec's route for a deployment reference: its development and
// production forms, or {deployment_id} for the deployment whose ID is byID.
func deploymentRoute(method, ref, byID, suffix string) string {
	if ref == byID {
		ref = "{deployment_id}"
	}
	return method + " /v1/models/{model_id}/deployments/" + ref + suffix
}

// waitPromotionOver waits until the environment's promotion workflow has ended: the
// environment may show no promotion while the workflow still winds one down, and a promotion
// started then is refused as running.
func (h *harness) waitPromotionOver(modelID, env string) {
	h.t.Helper()
	tc := h.temporal()
	require.Eventually(h.t, func() bool {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		d, err := tc.DescribeWorkflowExecution(ctx, contract.PromotionWorkflowID(modelID, env), "")
		return err == nil && d.WorkflowExecutionInfo.Status != enumspb.WORKFLOW_EXECUTION_STATUS_RUNNING
	}, 60*time.Second, 100*time.Millisecond, "the promotion of %s never ended", env)
}

// Bodies of the spec's request schemas, every documented field sent.

func deploymentPayload(config map[string]any, raw string, name, environment any, isDevelopment bool) map[string]any {
	return map[string]any{
		"config":                     config,
		"raw_config":                 raw,
		"user_env":                   map[string]any{"truss_version": "0.11.0", "python_version": "3.12.3"},
		"environment_name":           environment,
		"preserve_env_instance_type": true,
		"deploy_timeout_minutes":     30,
		"deployment_name":            name,
		"labels":                     map[string]any{"team": "search", "tier": "gold"},
		"is_development":             isDevelopment,
	}
}

func autoscalingBody(maxReplica int) map[string]any {
	return map[string]any{
		"min_replica":                   1,
		"max_replica":                   maxReplica,
		"autoscaling_window":            60,
		"scale_down_delay":              30,
		"concurrency_target":            2,
		"target_utilization_percentage": 70,
		"target_in_flight_tokens":       40000,
		"max_scale_down_rate":           20,
	}
}

func promotionBody(ramp bool) map[string]any {
	return map[string]any{
		"redeploy_on_promotion":      false,
		"rolling_deploy":             false,
		"promotion_cleanup_strategy": "KEEP",
		"rolling_deploy_config": map[string]any{
			"rolling_deploy_strategy":    "REPLICA",
			"max_surge_percent":          25,
			"max_unavailable_percent":    0,
			"stabilization_time_seconds": 0,
			"replica_overhead_percent":   0,
		},
		"ramp_up_while_promoting":  ramp,
		"ramp_up_duration_seconds": 600,
	}
}

func scheduleBody() map[string]any {
	return map[string]any{
		"timezone": "Europe/Berlin",
		"schedules": []any{map[string]any{
			"id":           nil,
			"name":         "weekday-peak",
			"enabled":      true,
			"cadence":      "DAILY",
			"weekdays":     []string{"MONDAY", "TUESDAY", "WEDNESDAY", "THURSDAY", "FRIDAY"},
			"start_hour":   8,
			"start_minute": 0,
			"end_hour":     18,
			"end_minute":   0,
			"autoscaling_settings": map[string]any{
				"min_replica":                   1,
				"max_replica":                   2,
				"autoscaling_window":            nil,
				"scale_down_delay":              nil,
				"concurrency_target":            nil,
				"target_utilization_percentage": nil,
				"target_in_flight_tokens":       nil,
				"max_scale_down_rate":           nil,
			},
		}},
		"delete_schedules": []string{},
	}
}

// echoPackage is the echo example's config.yaml, as text and as the JSON object a Baseten
// client sends as the deployment's config.
func echoPackage(t *testing.T) (map[string]any, string) {
	t.Helper()
	raw, err := os.ReadFile("../examples/models/echo/" + modelpkg.ConfigFile)
	require.NoError(t, err)
	var cfg map[string]any
	require.NoError(t, yaml.Unmarshal(raw, &cfg))
	return generic(cfg).(map[string]any), string(raw)
}

// TestConformance_BodiesCoverTheirSchemas checks that the bodies the flow builds send every
// property of their spec schemas, without starting a stack: a field the spec gains fails here
// first.
func TestConformance_BodiesCoverTheirSchemas(t *testing.T) {
	doc, _ := loadSpec(t, "http://127.0.0.1")
	cfg, raw := echoPackage(t)
	for route, body := range map[string]any{
		"POST /v1/prepare_model_upload": map[string]any{"deployment": deploymentPayload(cfg, raw, "v1", nil, false),
			"name": "echo", "team_id": nil, "model_id": nil, "dry_run": true},
		"POST /v1/models": map[string]any{"source": map[string]any{"kind": "model_archive", "name": "echo",
			"deployment": deploymentPayload(cfg, raw, "v1", nil, false), "s3_key": nil, "disable_archive_download": false}},
		"POST /v1/models/{model_id}/deployments": map[string]any{"source": map[string]any{"kind": "model_archive",
			"deployment": deploymentPayload(cfg, raw, "v2", "staging", false), "s3_key": nil}},
		"POST /v1/models/{model_id}/environments": map[string]any{"name": "staging", "autoscaling_settings": autoscalingBody(2),
			"promotion_settings": promotionBody(false), "request_backpressure_settings": map[string]any{"policy": "REJECT_ON_FULL"}},
		"PATCH /v1/models/{model_id}/environments/{env_name}": map[string]any{"autoscaling_settings": autoscalingBody(2),
			"promotion_settings": promotionBody(true), "autoscaling_schedule_settings": scheduleBody(),
			"request_backpressure_settings": map[string]any{"policy": "QUEUE_ON_FULL"}},
		"PATCH /v1/models/{model_id}/deployments/{deployment_id}/autoscaling_settings": autoscalingBody(2),
		"POST /v1/secrets": map[string]any{"name": "hf_token", "value": "conformance-value"},
	} {
		schema := requestSchema(t, doc, route)
		require.Empty(t, uncovered(schema, generic(body), ""), "%s: properties the body does not send", route)
		require.NoError(t, schema.VisitJSON(generic(body), openapi3.EnableJSONSchema2020()), "%s: the body is not the spec's", route)
	}
	// The check itself finds a field left out, at any depth.
	schema := requestSchema(t, doc, "POST /v1/models")
	body := generic(map[string]any{"source": map[string]any{"kind": "model_archive", "name": "echo",
		"deployment": map[string]any{"config": cfg}}})
	require.Contains(t, uncovered(schema, body, ""), "source.deployment.labels")
	require.Contains(t, uncovered(schema, body, ""), "source.s3_key")
}

// TestConformance_RouteTableMatchesTheServer checks servedSpecRoutes against the routes
// api.New registers: every /v1 route that the spec has is in the table, and the table has
// nothing the server does not serve. Every other /v1 route is in modelplaneRoutes.
func TestConformance_RouteTableMatchesTheServer(t *testing.T) {
	const server = "http://127.0.0.1:8080"
	_, router := loadSpec(t, server)
	e := api.New(api.Deps{Registry: prometheus.NewRegistry(), Logger: slog.New(slog.DiscardHandler)})
	samples := map[string][]string{
		":model_id": {"q4z8m2xw"}, ":deployment_id": {"w2x8m4qz", "development", "production"},
		":env": {"staging"}, ":replica_id": {"r7k2m9qa"}, ":api_key_prefix": {"abcdefghijkl"}, ":token": {"t0k3n"},
		":secret_name": {"hf_token"},
	}
	served := map[string]bool{}
	own := map[string]bool{}
	for _, r := range e.Routes() {
		if !strings.HasPrefix(r.Path, "/v1/") {
			continue
		}
		paths := []string{r.Path}
		for param, values := range samples {
			var next []string
			for _, p := range paths {
				if !strings.Contains(p, param) {
					next = append(next, p)
					continue
				}
				for _, v := range values {
					next = append(next, strings.ReplaceAll(p, param, v))
				}
			}
			paths = next
		}
		inSpec := false
		for _, p := range paths {
			req, err := http.NewRequest(r.Method, server+p, nil)
			require.NoError(t, err)
			if route, _, err := router.FindRoute(req); err == nil {
				served[r.Method+" "+route.Path] = true
				inSpec = true
			}
		}
		// Echo's own catch-all of a group is no route of the server's.
		if !inSpec && !strings.HasPrefix(r.Method, "echo_") {
			own[r.Method+" "+r.Path] = true
		}
	}
	var unlisted, gone []string
	for r := range own {
		if !slices.Contains(modelplaneRoutes, r) {
			unlisted = append(unlisted, r)
		}
	}
	for _, r := range modelplaneRoutes {
		if !own[r] {
			gone = append(gone, r)
		}
	}
	sort.Strings(unlisted)
	require.Empty(t, unlisted, "api/server.go serves these routes that are not in the spec; add them to modelplaneRoutes and docs/API.md")
	require.Empty(t, gone, "modelplaneRoutes names routes api/server.go does not serve, or that the spec has")
	table := map[string]bool{}
	for _, r := range servedSpecRoutes {
		require.False(t, table[r], "%s is twice in servedSpecRoutes", r)
		table[r] = true
	}
	var missing, extra []string
	for r := range served {
		if !table[r] {
			missing = append(missing, r)
		}
	}
	for r := range table {
		if !served[r] {
			extra = append(extra, r)
		}
	}
	sort.Strings(missing)
	sort.Strings(extra)
	require.Empty(t, missing, "api/server.go serves these routes of the spec; add them to servedSpecRoutes and to the flow")
	require.Empty(t, extra, "servedSpecRoutes names routes api/server.go does not serve")
}

// TestConformance_FlowAgainstBasetenSpec drives a model's whole life through the management
// API the way a Baseten client does, with request bodies that send every field the spec
// documents, and checks every request and answer on a route of Baseten's OpenAPI spec against
// it. It ends with the line "conformance: N routes checked, M responses validated, K failing"
// and the failures, and fails when K > 0 or when a route of servedSpecRoutes was not sent.
func TestConformance_FlowAgainstBasetenSpec(t *testing.T) {
	h := start(t)
	doc, router := loadSpec(t, h.stack.APIURL)
	c := newConformance(router)
	f := &flow{t: t, h: h, c: c, doc: doc, http: &http.Client{Transport: c, Timeout: 60 * time.Second}}
	h.api.HTTPClient = f.http // the harness's waits are checked too
	t.Cleanup(func() {
		line, lines := c.summary()
		c.mu.Lock()
		var missed []string
		for _, r := range servedSpecRoutes {
			if c.exercised[r] == 0 {
				missed = append(missed, r)
			}
		}
		var ours []string
		for r, n := range c.ours {
			ours = append(ours, fmt.Sprintf("  %s (%d)", r, n))
		}
		c.mu.Unlock()
		sort.Strings(ours)
		report := line + "\n" + strings.Join(lines, "\n")
		if len(lines) > 0 {
			report += "\n"
		}
		t.Logf("%sroutes of modelplane's own, not in the spec:\n%s", report, strings.Join(ours, "\n"))
		if !testing.Verbose() {
			fmt.Print(report)
		}
		if len(missed) > 0 {
			t.Errorf("the flow sent no request to these routes the server serves:\n  %s", strings.Join(missed, "\n  "))
		}
		if len(lines) > 0 {
			t.Errorf("%d failures against Baseten's spec (listed above)", len(lines))
		}
	})
	cfg, raw := echoPackage(t)
	const name = "conformance-echo"
	m := func(rest string) string { return "/v1/models/" + rest }

	// A Baseten client checks its push, asks where to put the package, puts it there and
	// names it by that key.
	f.send("POST /v1/prepare_model_upload", "/v1/prepare_model_upload", map[string]any{
		"deployment": deploymentPayload(cfg, raw, "v1", nil, false), "name": name, "team_id": nil, "model_id": nil, "dry_run": true})
	code, out, _ := f.send("POST /v1/prepare_model_upload", "/v1/prepare_model_upload", map[string]any{
		"deployment": deploymentPayload(cfg, raw, "v1", nil, false), "name": name, "team_id": nil, "model_id": nil, "dry_run": false})
	f.ok(code, out, "preparing the upload")
	key := str(out, "s3_key")
	var pkg bytes.Buffer
	_, err := modelpkg.Pack("../examples/models/echo", &pkg)
	require.NoError(t, err)
	_, err = h.api.UploadPrepared(context.Background(), key, &pkg)
	require.NoError(t, err, "uploading the package to the prepared key")

	// The model and its first deployment.
	code, out, body := f.send("POST /v1/models", "/v1/models", map[string]any{"source": map[string]any{
		"kind": "model_archive", "name": name, "s3_key": key, "disable_archive_download": false,
		"deployment": deploymentPayload(cfg, raw, "v1", nil, false)}})
	f.ok(code, out, "creating the model")
	modelID, first := str(out, "model", "id"), str(out, "deployment", "id")
	if sent(body, "source.deployment.deployment_name") {
		f.expect("POST /v1/models", code, str(out, "deployment", "name") == "v1",
			"source.deployment.deployment_name v1 sent, the deployment is named %q", str(out, "deployment", "name"))
	}
	if sent(body, "source.deployment.labels") {
		f.expect("POST /v1/models", code, reflect.DeepEqual(dig(out, "deployment", "labels"), dig(body, "source", "deployment", "labels")),
			"source.deployment.labels %v sent, the deployment has %v", dig(body, "source", "deployment", "labels"), dig(out, "deployment", "labels"))
	}
	h.waitStatus(modelID, first, "ACTIVE")

	// Reads.
	code, out = f.do(http.MethodGet, "/v1/models", nil)
	f.ok(code, out, "listing models")
	code, out = f.do(http.MethodGet, "/v1/models?name="+name, nil)
	f.ok(code, out, "listing models by name")
	code, out = f.do(http.MethodGet, m(modelID), nil)
	f.ok(code, out, "reading the model")
	code, out = f.do(http.MethodGet, m(modelID+"/deployments"), nil)
	f.ok(code, out, "listing deployments")
	code, out = f.do(http.MethodGet, m(modelID+"/deployments/"+first), nil)
	f.ok(code, out, "reading the deployment")

	// The development deployment.
	// Later deployments name an archive uploaded with modelplane's POST /v1/archives by its ID.
	archive := echoArchive(t, h)
	code, out, _ = f.send("POST /v1/models/{model_id}/deployments", m(modelID+"/deployments"), map[string]any{"source": map[string]any{
		"kind": "model_archive", "s3_key": archive,
		"deployment": deploymentPayload(cfg, raw, nil, nil, true)}})
	f.ok(code, out, "creating the development deployment")
	f.expect("POST /v1/models/{model_id}/deployments", code, dig(out, "deployment", "is_development") == true,
		"source.deployment.is_development true sent, the deployment has is_development %v", dig(out, "deployment", "is_development"))
	h.waitStatus(modelID, "development", "ACTIVE")
	code, out = f.do(http.MethodGet, m(modelID+"/deployments/development"), nil)
	f.ok(code, out, "reading the development deployment")
	dev := str(out, "id")

	// Rename, then promote to production.
	code, out, _ = f.send("PATCH /v1/models/{model_id}/deployments/{deployment_id}", m(modelID+"/deployments/"+first),
		map[string]any{"name": "v1-renamed"})
	f.ok(code, out, "renaming the deployment")
	f.expect("PATCH /v1/models/{model_id}/deployments/{deployment_id}", code, str(out, "name") == "v1-renamed",
		"name v1-renamed sent, the answer names %q", str(out, "name"))
	code, out, _ = f.send("POST /v1/models/{model_id}/deployments/{deployment_id}/promote", m(modelID+"/deployments/"+first+"/promote"),
		map[string]any{"scale_down_previous_production": false, "preserve_env_instance_type": true})
	f.ok(code, out, "promoting to production")
	h.waitCurrent(modelID, "production", first, "")
	code, out = f.do(http.MethodGet, m(modelID+"/deployments/production"), nil)
	f.ok(code, out, "reading the production deployment")

	// A custom environment, and a deployment pushed straight to it.
	const envRoute = "POST /v1/models/{model_id}/environments"
	code, out, _ = f.send(envRoute, m(modelID+"/environments"), map[string]any{"name": "staging",
		"autoscaling_settings": autoscalingBody(2), "promotion_settings": promotionBody(false),
		"request_backpressure_settings": map[string]any{"policy": "REJECT_ON_FULL"}})
	f.ok(code, out, "creating the staging environment")
	code, out, body = f.send("POST /v1/models/{model_id}/deployments", m(modelID+"/deployments"), map[string]any{"source": map[string]any{
		"kind": "model_archive", "s3_key": archive,
		"deployment": deploymentPayload(cfg, raw, "v2", "staging", false)}})
	f.ok(code, out, "creating the second deployment")
	second := str(out, "deployment", "id")
	h.waitStatus(modelID, second, "ACTIVE")
	if sent(body, "source.deployment.environment_name") {
		h.waitCurrent(modelID, "staging", second, "")
	} else {
		code, out, _ = f.send("POST /v1/models/{model_id}/environments/{env_name}/promote", m(modelID+"/environments/staging/promote"),
			map[string]any{"deployment_id": second, "scale_down_previous_deployment": false, "preserve_env_instance_type": true})
		f.ok(code, out, "promoting to staging")
		h.waitCurrent(modelID, "staging", second, "")
	}
	code, out = f.do(http.MethodGet, m(modelID+"/environments"), nil)
	f.ok(code, out, "listing environments")
	code, out = f.do(http.MethodGet, m(modelID+"/environments/staging"), nil)
	f.ok(code, out, "reading the staging environment")

	// Production moves to the second deployment through the environment's promote.
	code, out, _ = f.send("POST /v1/models/{model_id}/environments/{env_name}/promote", m(modelID+"/environments/production/promote"),
		map[string]any{"deployment_id": second, "scale_down_previous_deployment": false, "preserve_env_instance_type": true})
	f.ok(code, out, "promoting to production through the environment")
	h.waitCurrent(modelID, "production", second, "")

	// Settings.
	for _, ref := range []string{first, "development", "production"} {
		settings := autoscalingBody(2)
		if ref == "development" {
			settings = autoscalingBody(1)
		}
		route := deploymentRoute("PATCH", ref, first, "/autoscaling_settings")
		code, out, body = f.send(route, m(modelID+"/deployments/"+ref+"/autoscaling_settings"), settings)
		f.ok(code, out, "setting autoscaling of "+ref)
		code, out = f.do(http.MethodGet, m(modelID+"/deployments/"+ref), nil)
		f.ok(code, out, "reading "+ref)
		for k, v := range body {
			got, ok := dig(out, "autoscaling_settings").(map[string]any)[k]
			if out["autoscaling_settings"] == nil {
				ok = false
			}
			f.expect(route, 200, !ok || reflect.DeepEqual(got, v),
				"%s %v sent, GET deployment answers autoscaling_settings.%s %v", k, v, k, got)
		}
	}
	code, out, _ = f.send("PATCH /v1/models/{model_id}/deployments/{deployment_id}/request_backpressure_settings",
		m(modelID+"/deployments/"+second+"/request_backpressure_settings"), map[string]any{"policy": "QUEUE_ON_FULL"})
	f.ok(code, out, "setting request backpressure")
	f.expect("PATCH /v1/models/{model_id}/deployments/{deployment_id}/request_backpressure_settings", code,
		str(out, "policy") == "QUEUE_ON_FULL", "policy QUEUE_ON_FULL sent, the answer has %v", out["policy"])
	code, out, _ = f.send("PATCH /v1/models/{model_id}/environments/{env_name}", m(modelID+"/environments/staging"), map[string]any{
		"autoscaling_settings": autoscalingBody(2), "promotion_settings": promotionBody(true),
		"autoscaling_schedule_settings": scheduleBody(), "request_backpressure_settings": map[string]any{"policy": "QUEUE_ON_FULL"}})
	f.ok(code, out, "updating the staging environment")

	// Promotion controls, on a promotion that ramps over ten minutes.
	promoteStaging := func(deploymentID string) {
		t.Helper()
		code, out, _ := f.send("POST /v1/models/{model_id}/environments/{env_name}/promote", m(modelID+"/environments/staging/promote"),
			map[string]any{"deployment_id": deploymentID, "scale_down_previous_deployment": false, "preserve_env_instance_type": true})
		f.ok(code, out, "promoting to staging")
		require.Eventually(t, func() bool {
			code, out := f.do(http.MethodGet, m(modelID+"/environments/staging"), nil)
			return code == http.StatusOK && str(out, "in_progress_promotion", "status") == "RAMPING_UP"
		}, 90*time.Second, 200*time.Millisecond, "the promotion of %s to staging never ramped", deploymentID)
	}
	control := func(name string) map[string]any {
		t.Helper()
		code, out := f.do(http.MethodPost, m(modelID+"/environments/staging/"+name), nil)
		f.ok(code, out, name)
		return out
	}
	promoteStaging(first)
	for _, name := range []string{"pause_promotion", "resume_promotion", "force_roll_forward_promotion"} {
		out := control(name)
		f.expect("POST /v1/models/{model_id}/environments/{env_name}/"+name, 200, out["success"] == true,
			"the running promotion did not take it: %v", out)
	}
	h.waitCurrent(modelID, "staging", first, "")
	h.waitPromotionOver(modelID, "staging")
	promoteStaging(second)
	control("cancel_promotion")
	h.waitCurrent(modelID, "staging", first, "")
	h.waitPromotionOver(modelID, "staging")
	promoteStaging(second)
	out = control("force_cancel_promotion")
	f.expect("POST /v1/models/{model_id}/environments/{env_name}/force_cancel_promotion", 200, out["success"] == true,
		"the running promotion did not take it: %v", out)
	h.waitCurrent(modelID, "staging", first, "")
	h.waitPromotionOver(modelID, "staging")

	// What a deployment runs.
	code, out = f.do(http.MethodGet, m(modelID+"/deployments/"+first+"/config?output_format=both"), nil)
	f.ok(code, out, "reading the config")
	code, out = f.do(http.MethodGet, m(modelID+"/deployments/"+first+"/download"), nil)
	f.ok(code, out, "asking for a download")
	u, err := url.Parse(str(out, "download_url"))
	require.NoError(t, err)
	resp, err := f.http.Get(h.stack.APIURL + u.Path)
	require.NoError(t, err)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "the download URL serves the package")

	// Metrics.
	now := time.Now().UnixMilli()
	for _, q := range []string{
		m(modelID + "/deployments/" + second + "/metrics"),
		m(modelID + "/deployments/" + second + "/metrics?mode=SUMMARY&start_epoch_millis=" + strconv.FormatInt(now-600_000, 10) +
			"&end_epoch_millis=" + strconv.FormatInt(now, 10) + "&metrics=baseten_replicas_active&metrics=baseten_inference_requests_total"),
		m(modelID + "/environments/production/metrics?mode=CURRENT"),
		m(modelID + "/environments/staging/metrics?mode=SERIES&start_epoch_millis=" + strconv.FormatInt(now-600_000, 10)),
	} {
		code, out = f.do(http.MethodGet, q, nil)
		f.ok(code, out, "reading metrics "+q)
	}

	// Logs.
	for _, q := range []string{
		m(modelID + "/deployments/" + second + "/logs"),
		m(modelID + "/deployments/" + second + "/logs?direction=desc&limit=10&min_level=INFO&start_epoch_millis=" +
			strconv.FormatInt(now-600_000, 10) + "&end_epoch_millis=" + strconv.FormatInt(now, 10)),
		m(modelID + "/environments/production/logs?component=model&includes=a&excludes=b&search_pattern=.&replica=r"),
	} {
		code, out = f.do(http.MethodGet, q, nil)
		f.ok(code, out, "reading logs "+q)
	}
	code, out, _ = f.send("POST /v1/models/{model_id}/deployments/{deployment_id}/logs", m(modelID+"/deployments/"+second+"/logs"),
		map[string]any{"start_epoch_millis": now - 600_000, "end_epoch_millis": now, "direction": "asc", "limit": 100,
			"min_level": "DEBUG", "replica": nil, "request_id": nil, "component": "build", "search_pattern": ".*",
			"includes": []string{}, "excludes": []string{}})
	f.ok(code, out, "reading logs by POST")

	// Live reload of the development deployment.
	code, out = f.do(http.MethodGet, m(modelID+"/deployments/development/patches/state"), nil)
	f.ok(code, out, "reading the patch state")
	running := dig(out, "running_patch_point")
	hashes, _ := dig(running, "content_hashes").(map[string]any)
	next := map[string]any{}
	for k, v := range hashes {
		next[k] = v
	}
	content := "CONFORMANCE = True\n"
	next["model/conformance.py"] = patch.SumHex([]byte(content))
	code, out, _ = f.send("POST /v1/models/{model_id}/deployments/{deployment_id}/patches", m(modelID+"/deployments/development/patches"),
		map[string]any{"prev_patch_hash": str(running, "hash"),
			"next_patch_point": map[string]any{"content_hashes": next, "config": str(running, "config"), "requirements": []string{}},
			"patch_ops": []any{map[string]any{"type": "model_code", "action": "ADD", "path": "model/conformance.py",
				"content": content, "content_bytes": nil, "hot_reload": true}}})
	f.ok(code, out, "staging a patch")
	code, out, _ = f.send("POST /v1/models/{model_id}/deployments/{deployment_id}/patches/sync",
		m(modelID+"/deployments/development/patches/sync"), map[string]any{})
	f.ok(code, out, "syncing patches")
	f.expect("POST /v1/models/{model_id}/deployments/{deployment_id}/patches/sync", code, out["needs_full_deploy_reason"] == nil,
		"a new model file needs no full deploy, the answer says %v", out["needs_full_deploy_reason"])
	code, out = f.do(http.MethodGet, m(modelID+"/deployments/development/patches/state"), nil)
	f.ok(code, out, "reading the patch state after the sync")
	h.waitStatus(modelID, "development", "ACTIVE")

	// Retry answers for deployments that have not failed, and a replica replaced.
	for _, ref := range []string{first, "development", "production"} {
		code, out = f.do(http.MethodPost, m(modelID+"/deployments/"+ref+"/retry"), nil)
		f.ok(code, out, "retrying "+ref)
		f.expect(deploymentRoute("POST", ref, first, "/retry"), code, out["retried"] == false,
			"an ACTIVE deployment is not retried: %v", out)
	}
	r, ok := h.replica(dev)
	require.True(t, ok, "the development deployment has a replica")
	code, out = f.do(http.MethodDelete, m(modelID+"/deployments/development/replicas/"+r.ID), nil)
	f.ok(code, out, "terminating a replica")
	require.Eventually(t, func() bool { n, ok := h.replica(dev); return ok && n.ID != r.ID }, 60*time.Second, 100*time.Millisecond,
		"no replica replaced the terminated one")
	h.waitStatus(modelID, "development", "ACTIVE")

	// Deactivate and activate: a deployment by ID, the development and production forms, and
	// an environment.
	for _, ref := range []string{first, "development", "production"} {
		code, out = f.do(http.MethodPost, m(modelID+"/deployments/"+ref+"/deactivate"), nil)
		f.ok(code, out, "deactivating "+ref)
		h.waitStatus(modelID, ref, "INACTIVE")
		code, out = f.do(http.MethodPost, m(modelID+"/deployments/"+ref+"/activate"), nil)
		f.ok(code, out, "activating "+ref)
		h.waitStatus(modelID, ref, "ACTIVE")
	}
	code, out = f.do(http.MethodPost, m(modelID+"/environments/staging/deactivate"), nil)
	f.ok(code, out, "deactivating staging")
	h.waitStatus(modelID, first, "INACTIVE")
	code, out = f.do(http.MethodPost, m(modelID+"/environments/staging/activate"), nil)
	f.ok(code, out, "activating staging")
	h.waitStatus(modelID, first, "ACTIVE")

	// Promoting the development deployment makes a deployment of what it runs.
	code, out, _ = f.send("POST /v1/models/{model_id}/deployments/development/promote", m(modelID+"/deployments/development/promote"),
		map[string]any{"scale_down_previous_production": false, "preserve_env_instance_type": true})
	f.ok(code, out, "promoting the development deployment")
	h.waitCurrent(modelID, "production", "", second)

	// The workspace.
	code, out = f.do(http.MethodGet, "/v1/instance_types", nil)
	f.ok(code, out, "listing instance types")
	code, out, _ = f.send("POST /v1/api_keys", "/v1/api_keys", map[string]any{"name": "conformance-ci", "type": "PERSONAL", "model_ids": nil})
	f.ok(code, out, "creating an API key")
	code, out = f.do(http.MethodGet, "/v1/api_keys", nil)
	f.ok(code, out, "listing API keys")
	var prefix string
	keys, _ := out["keys"].([]any)
	for _, k := range keys {
		if str(k, "name") == "conformance-ci" {
			prefix = str(k, "prefix")
		}
	}
	require.NotEmpty(t, prefix, "the new key is listed: %v", out)
	code, out = f.do(http.MethodDelete, "/v1/api_keys/"+prefix, nil)
	f.ok(code, out, "deleting the API key")
	code, out, _ = f.send("POST /v1/secrets", "/v1/secrets", map[string]any{"name": "hf_token", "value": "conformance-value"})
	f.ok(code, out, "setting a secret")
	code, out = f.do(http.MethodGet, "/v1/secrets", nil)
	f.ok(code, out, "listing secrets")
	code, out = f.do(http.MethodDelete, "/v1/secrets/hf_token", nil)
	f.ok(code, out, "deleting the secret")

	// Audit logs, a page and the one after it.
	for _, base := range []string{"/v1/audit_logs", m(modelID + "/audit_logs")} {
		code, out = f.do(http.MethodGet, base+"?limit=2&direction=DESC", nil)
		f.ok(code, out, "reading "+base)
		cursor := str(out, "pagination", "cursor")
		f.expect("GET "+strings.Replace(base, modelID, "{model_id}", 1), code, cursor != "",
			"the first page (limit=2, with more entries logged) has no pagination.cursor")
		if cursor != "" {
			code, out = f.do(http.MethodGet, base+"?limit=2&cursor="+url.QueryEscape(cursor), nil)
			f.ok(code, out, "reading the next page of "+base)
		}
	}

	// Teardown, as a client does it.
	code, out = f.do(http.MethodDelete, m(modelID+"/environments/staging"), nil)
	f.ok(code, out, "deleting staging")
	code, out = f.do(http.MethodDelete, m(modelID+"/deployments/"+first), nil)
	f.ok(code, out, "deleting the first deployment")
	code, out = f.do(http.MethodDelete, m(modelID), nil)
	f.ok(code, out, "deleting the model")
}
