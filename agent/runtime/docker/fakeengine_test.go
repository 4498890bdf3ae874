package docker

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeEngine is an in-memory Docker Engine API (v1.41) that serves just the endpoints the
// runtime uses. It is strict about what it receives: an unexpected path, query parameter or
// JSON field fails the test, so a misspelt field cannot pass silently.
type fakeEngine struct {
	t *testing.T

	mu         sync.Mutex
	containers map[string]*fakeContainer // by ID
	images     map[string]bool           // present locally, as name:tag
	registry   map[string]bool           // pullable, as name:tag
	nextID     int

	calls      []string         // "METHOD /path" without the version prefix, in order
	creates    []fakeCreateBody // bodies of create requests, in order
	rawCreates []any            // the same bodies, decoded generically, to compare exactly
	pulls      []string         // fromImage + ":" + tag
	stops      []string         // container ID + " t=" + t

	// fail makes an operation (create, start, inspect, logs, stop, remove, list, pull) answer
	// with an engine error instead of doing its work.
	fail map[string]fakeFailure
	// pullStreamError makes a pull answer 200 and then report this error in its stream.
	pullStreamError string
}

type fakeFailure struct {
	status  int
	message string
}

type fakeContainer struct {
	ID        string
	Name      string // without the leading slash
	Image     string
	Env       []string
	Labels    map[string]string
	HostPort  string // published for 8080/tcp on HostIP; empty if none
	HostIP    string // 127.0.0.1 when empty
	Status    string // created, running, exited, dead
	ExitCode  int
	OOMKilled bool
	Error     string
	Tty       bool
	Logs      []fakeFrame
}

type fakeFrame struct {
	stream byte // 1 stdout, 2 stderr
	data   string
}

// fakeCreateBody is the create request as the Engine API spells it, written independently of
// the runtime's own wire types so that the two check each other.
type fakeCreateBody struct {
	Name         string `json:"-"`
	Image        string
	Entrypoint   []string
	Cmd          []string
	User         string
	WorkingDir   string
	Env          []string
	Labels       map[string]string
	ExposedPorts map[string]struct{}
	HostConfig   struct {
		PortBindings map[string][]struct {
			HostIp   string
			HostPort string
		}
		RestartPolicy struct {
			Name              string
			MaximumRetryCount int
		}
		DeviceRequests []struct {
			Driver       string
			Count        int
			DeviceIDs    []string
			Capabilities [][]string
			Options      map[string]string
		}
		// Binds are host-src:container-dest[:options], as the Engine API has them.
		Binds       []string
		CapDrop     []string
		SecurityOpt []string
		PidsLimit   *int64
		Privileged  bool
	}
}

// Exact JSON schema of a create body: keys are compared case-sensitively, which
// encoding/json's decoding does not do.
type (
	jsonFields map[string]any // object with these exact keys; value nil = any scalar
	jsonList   struct{ elem any }
	jsonMap    struct{ elem any } // object with arbitrary keys
)

var createSchema = jsonFields{
	"Image":        nil,
	"Entrypoint":   jsonList{nil},
	"Cmd":          jsonList{nil},
	"User":         nil,
	"WorkingDir":   nil,
	"Env":          jsonList{nil},
	"Labels":       jsonMap{nil},
	"ExposedPorts": jsonMap{jsonFields{}},
	"HostConfig": jsonFields{
		"PortBindings":   jsonMap{jsonList{jsonFields{"HostIp": nil, "HostPort": nil}}},
		"RestartPolicy":  jsonFields{"Name": nil, "MaximumRetryCount": nil},
		"DeviceRequests": jsonList{jsonFields{"Driver": nil, "Count": nil, "DeviceIDs": jsonList{nil}, "Capabilities": jsonList{jsonList{nil}}, "Options": jsonMap{nil}}},
		"Binds":          jsonList{nil},
		"CapDrop":        jsonList{nil},
		"SecurityOpt":    jsonList{nil},
		"PidsLimit":      nil,
		"Privileged":     nil,
	},
}

func checkSchema(path string, v any, s any) []string {
	if v == nil {
		return nil
	}
	switch s := s.(type) {
	case nil:
		switch v.(type) {
		case map[string]any, []any:
			return []string{fmt.Sprintf("%s: want a scalar, got %T", path, v)}
		}
		return nil
	case jsonFields:
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %T", path, v)}
		}
		var bad []string
		for k, sub := range m {
			want, ok := s[k]
			if !ok {
				bad = append(bad, fmt.Sprintf("%s: unknown field %q", path, k))
				continue
			}
			bad = append(bad, checkSchema(path+"."+k, sub, want)...)
		}
		return bad
	case jsonMap:
		m, ok := v.(map[string]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want an object, got %T", path, v)}
		}
		var bad []string
		for k, sub := range m {
			bad = append(bad, checkSchema(path+"["+k+"]", sub, s.elem)...)
		}
		return bad
	case jsonList:
		l, ok := v.([]any)
		if !ok {
			return []string{fmt.Sprintf("%s: want a list, got %T", path, v)}
		}
		var bad []string
		for i, sub := range l {
			bad = append(bad, checkSchema(fmt.Sprintf("%s[%d]", path, i), sub, s.elem)...)
		}
		return bad
	}
	return []string{fmt.Sprintf("%s: bad schema %T", path, s)}
}

func newFake(t *testing.T) *fakeEngine {
	return &fakeEngine{
		t:          t,
		containers: map[string]*fakeContainer{},
		images:     map[string]bool{},
		registry:   map[string]bool{},
		fail:       map[string]fakeFailure{},
	}
}

// newFakeEngine starts the fake on TCP and returns a Runtime talking to it.
func newFakeEngine(t *testing.T) (*fakeEngine, *Runtime) {
	t.Helper()
	f := newFake(t)
	srv := httptest.NewServer(f.handler())
	t.Cleanup(srv.Close)
	rt := New(Options{BaseURL: srv.URL, HTTPClient: srv.Client(), AgentID: "agent-1"})
	return f, rt
}

func (f *fakeEngine) handler() http.Handler {
	mux := http.NewServeMux()
	const v = "/v1.41"
	mux.HandleFunc("GET /_ping", f.ping)
	mux.HandleFunc("POST "+v+"/containers/create", f.create)
	mux.HandleFunc("POST "+v+"/images/create", f.pull)
	mux.HandleFunc("POST "+v+"/containers/{id}/start", f.start)
	mux.HandleFunc("GET "+v+"/containers/{id}/json", f.inspect)
	mux.HandleFunc("GET "+v+"/containers/{id}/logs", f.logs)
	mux.HandleFunc("POST "+v+"/containers/{id}/stop", f.stop)
	mux.HandleFunc("DELETE "+v+"/containers/{id}", f.remove)
	mux.HandleFunc("GET "+v+"/containers/json", f.list)
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		f.t.Errorf("fake engine: unexpected request %s %s", r.Method, r.URL)
		writeError(w, http.StatusNotFound, "page not found")
	})
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls = append(f.calls, r.Method+" "+strings.TrimPrefix(r.URL.Path, v))
		f.mu.Unlock()
		mux.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"message": msg})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// query fails the test on a query parameter outside allowed and returns the parameters.
func (f *fakeEngine) query(r *http.Request, allowed ...string) map[string]string {
	out := map[string]string{}
	for k, vs := range r.URL.Query() {
		if !slices.Contains(allowed, k) {
			f.t.Errorf("fake engine: %s %s: unexpected query parameter %q", r.Method, r.URL.Path, k)
		}
		if len(vs) != 1 {
			f.t.Errorf("fake engine: %s %s: parameter %q given %d times", r.Method, r.URL.Path, k, len(vs))
		}
		out[k] = vs[0]
	}
	return out
}

// failed answers an injected failure for op, if any. The caller holds f.mu.
func (f *fakeEngine) failed(w http.ResponseWriter, op string) bool {
	if e, ok := f.fail[op]; ok {
		writeError(w, e.status, e.message)
		return true
	}
	return false
}

// lookup finds a container by ID, unique ID prefix or name, as the engine does. The caller
// holds f.mu.
func (f *fakeEngine) lookup(ref string) *fakeContainer {
	if c, ok := f.containers[ref]; ok {
		return c
	}
	name := strings.TrimPrefix(ref, "/")
	var byPrefix []*fakeContainer
	for _, c := range f.containers {
		if c.Name == name {
			return c
		}
		if strings.HasPrefix(c.ID, ref) {
			byPrefix = append(byPrefix, c)
		}
	}
	if len(byPrefix) == 1 {
		return byPrefix[0]
	}
	return nil
}

// add seeds a container, as if created earlier by anyone; it returns its ID.
func (f *fakeEngine) add(c *fakeContainer) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	if c.ID == "" {
		c.ID = fmt.Sprintf("%064x", f.nextID)
	}
	f.containers[c.ID] = c
	return c.ID
}

func (f *fakeEngine) container(id string) *fakeContainer {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lookup(id)
}

func (f *fakeEngine) callList() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls)
}

func imageKey(ref string) string {
	name, tag := ref, "latest"
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		name, tag = ref[:i], ref[i+1:]
	}
	return name + ":" + tag
}

func (f *fakeEngine) ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Api-Version", "1.41")
	_, _ = io.WriteString(w, "OK")
}

func (f *fakeEngine) create(w http.ResponseWriter, r *http.Request) {
	q := f.query(r, "name")
	if ct := r.Header.Get("Content-Type"); ct != "application/json" {
		f.t.Errorf("fake engine: create: Content-Type %q, want application/json", ct)
	}
	raw, err := io.ReadAll(r.Body)
	if err != nil {
		f.t.Errorf("fake engine: create: read body: %v", err)
		return
	}
	var generic any
	if err := json.Unmarshal(raw, &generic); err != nil {
		f.t.Errorf("fake engine: create: body is not JSON: %v\n%s", err, raw)
		writeError(w, http.StatusBadRequest, "invalid JSON")
		return
	}
	for _, problem := range checkSchema("body", generic, createSchema) {
		f.t.Errorf("fake engine: create: %s\n%s", problem, raw)
	}
	var body fakeCreateBody
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&body); err != nil {
		f.t.Errorf("fake engine: create: %v\n%s", err, raw)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	body.Name = q["name"]

	f.mu.Lock()
	defer f.mu.Unlock()
	f.creates = append(f.creates, body)
	f.rawCreates = append(f.rawCreates, generic)
	if f.failed(w, "create") {
		return
	}
	if !f.images[imageKey(body.Image)] {
		writeError(w, http.StatusNotFound, "No such image: "+body.Image)
		return
	}
	if c := f.lookup(body.Name); body.Name != "" && c != nil {
		writeError(w, http.StatusConflict, fmt.Sprintf("Conflict. The container name \"/%s\" is already in use by container \"%s\". You have to remove (or rename) that container to be able to reuse that name.", body.Name, c.ID))
		return
	}
	f.nextID++
	c := &fakeContainer{
		ID:     fmt.Sprintf("%064x", 0xc0ffee00+f.nextID),
		Name:   body.Name,
		Image:  body.Image,
		Env:    body.Env,
		Labels: body.Labels,
		Status: "created",
	}
	if b := body.HostConfig.PortBindings["8080/tcp"]; len(b) > 0 {
		c.HostPort, c.HostIP = b[0].HostPort, b[0].HostIp
	}
	f.containers[c.ID] = c
	writeJSON(w, http.StatusCreated, map[string]any{"Id": c.ID, "Warnings": []string{}})
}

func (f *fakeEngine) pull(w http.ResponseWriter, r *http.Request) {
	q := f.query(r, "fromImage", "tag")
	if q["tag"] == "" {
		f.t.Errorf("fake engine: pull of %q without a tag would pull every tag", q["fromImage"])
	}
	key := q["fromImage"] + ":" + q["tag"]
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pulls = append(f.pulls, key)
	if f.failed(w, "pull") {
		return
	}
	if !f.registry[key] {
		writeError(w, http.StatusNotFound, "pull access denied for "+q["fromImage"]+", repository does not exist or may require 'docker login'")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	enc := json.NewEncoder(w)
	_ = enc.Encode(map[string]string{"status": "Pulling from " + q["fromImage"], "id": q["tag"]})
	if f.pullStreamError != "" {
		_ = enc.Encode(map[string]any{"errorDetail": map[string]string{"message": f.pullStreamError}, "error": f.pullStreamError})
		return
	}
	_ = enc.Encode(map[string]string{"status": "Status: Downloaded newer image for " + key})
	f.images[key] = true
}

func (f *fakeEngine) start(w http.ResponseWriter, r *http.Request) {
	f.query(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed(w, "start") {
		return
	}
	c := f.lookup(r.PathValue("id"))
	switch {
	case c == nil:
		writeError(w, http.StatusNotFound, "No such container: "+r.PathValue("id"))
	case c.Status == "running":
		w.WriteHeader(http.StatusNotModified)
	default:
		c.Status, c.ExitCode = "running", 0
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeEngine) inspect(w http.ResponseWriter, r *http.Request) {
	f.query(r)
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed(w, "inspect") {
		return
	}
	c := f.lookup(r.PathValue("id"))
	if c == nil {
		writeError(w, http.StatusNotFound, "No such container: "+r.PathValue("id"))
		return
	}
	bindings := map[string]any{}
	if c.HostPort != "" {
		bindings["8080/tcp"] = []map[string]string{{"HostIp": c.hostIP(), "HostPort": c.HostPort}}
	}
	pid := 0
	if c.Status == "running" {
		pid = 4242
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"Id":      c.ID,
		"Name":    "/" + c.Name,
		"Created": "2025-01-01T00:00:00Z",
		"State": map[string]any{
			"Status":     c.Status,
			"Running":    c.Status == "running",
			"Paused":     false,
			"Restarting": false,
			"OOMKilled":  c.OOMKilled,
			"Dead":       c.Status == "dead",
			"Pid":        pid,
			"ExitCode":   c.ExitCode,
			"Error":      c.Error,
		},
		"Config": map[string]any{
			"Image":  c.Image,
			"Env":    c.Env,
			"Labels": c.Labels,
			"Tty":    c.Tty,
		},
		"HostConfig": map[string]any{
			"PortBindings":  bindings,
			"RestartPolicy": map[string]any{"Name": "no", "MaximumRetryCount": 0},
		},
	})
}

func (f *fakeEngine) logs(w http.ResponseWriter, r *http.Request) {
	q := f.query(r, "stdout", "stderr", "tail", "timestamps", "since", "until")
	// Either the tail of a dead container, or its lines with the timestamps the test wrote
	// at the start of each frame.
	if q["stdout"] != "1" || q["stderr"] != "1" || (q["tail"] != "20" && q["timestamps"] != "1") {
		f.t.Errorf("fake engine: logs query %v, want stdout=1 stderr=1 and tail=20 or timestamps=1", q)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed(w, "logs") {
		return
	}
	c := f.lookup(r.PathValue("id"))
	if c == nil {
		writeError(w, http.StatusNotFound, "No such container: "+r.PathValue("id"))
		return
	}
	frames := c.Logs
	if n, err := strconv.Atoi(q["tail"]); err == nil && n < len(frames) {
		frames = frames[len(frames)-n:]
	}
	if c.Tty {
		w.Header().Set("Content-Type", "application/vnd.docker.raw-stream")
		for _, fr := range frames {
			_, _ = io.WriteString(w, fr.data)
		}
		return
	}
	w.Header().Set("Content-Type", "application/vnd.docker.multiplexed-stream")
	for _, fr := range frames {
		var hdr [8]byte
		hdr[0] = fr.stream
		binary.BigEndian.PutUint32(hdr[4:], uint32(len(fr.data)))
		_, _ = w.Write(hdr[:])
		_, _ = io.WriteString(w, fr.data)
	}
}

func (f *fakeEngine) stop(w http.ResponseWriter, r *http.Request) {
	q := f.query(r, "t")
	f.mu.Lock()
	defer f.mu.Unlock()
	f.stops = append(f.stops, r.PathValue("id")+" t="+q["t"])
	if f.failed(w, "stop") {
		return
	}
	c := f.lookup(r.PathValue("id"))
	switch {
	case c == nil:
		writeError(w, http.StatusNotFound, "No such container: "+r.PathValue("id"))
	case c.Status != "running":
		w.WriteHeader(http.StatusNotModified)
	default:
		c.Status, c.ExitCode = "exited", 143 // SIGTERM
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeEngine) remove(w http.ResponseWriter, r *http.Request) {
	q := f.query(r, "force", "v")
	if q["force"] != "1" {
		f.t.Errorf("fake engine: remove without force=1: %v", q)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed(w, "remove") {
		return
	}
	c := f.lookup(r.PathValue("id"))
	if c == nil {
		writeError(w, http.StatusNotFound, "No such container: "+r.PathValue("id"))
		return
	}
	delete(f.containers, c.ID)
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeEngine) list(w http.ResponseWriter, r *http.Request) {
	q := f.query(r, "filters")
	var filters map[string][]string
	if err := json.Unmarshal([]byte(q["filters"]), &filters); err != nil {
		f.t.Errorf("fake engine: list: filters %q are not JSON: %v", q["filters"], err)
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	for k := range filters {
		if k != "label" {
			f.t.Errorf("fake engine: list: unexpected filter %q", k)
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failed(w, "list") {
		return
	}
	out := []map[string]any{}
	ids := make([]string, 0, len(f.containers))
	for id := range f.containers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		c := f.containers[id]
		if c.Status != "running" || !matchLabels(c.Labels, filters["label"]) {
			continue
		}
		ports := []map[string]any{}
		if c.HostPort != "" {
			p, _ := strconv.Atoi(c.HostPort)
			ports = append(ports, map[string]any{"IP": c.hostIP(), "PrivatePort": 8080, "PublicPort": p, "Type": "tcp"})
		}
		out = append(out, map[string]any{
			"Id":     c.ID,
			"Names":  []string{"/" + c.Name},
			"Image":  c.Image,
			"Labels": c.Labels,
			"State":  c.Status,
			"Status": "Up 5 minutes",
			"Ports":  ports,
		})
	}
	writeJSON(w, http.StatusOK, out)
}

// matchLabels applies label filters: "key" needs the label, "key=value" needs that value.
func matchLabels(labels map[string]string, filters []string) bool {
	for _, flt := range filters {
		k, v, hasValue := strings.Cut(flt, "=")
		got, ok := labels[k]
		if !ok || (hasValue && got != v) {
			return false
		}
	}
	return true
}

// hostIP is the address the container's port is published on.
func (c *fakeContainer) hostIP() string {
	if c.HostIP == "" {
		return "127.0.0.1"
	}
	return c.HostIP
}
