package docker

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// engine speaks the Docker Engine API: JSON over HTTP, normally on the engine's unix socket.
type engine struct {
	client  *http.Client
	baseURL string // scheme and host, without a trailing slash
	version string // path prefix such as "v1.41"
}

func newEngine(opts Options) *engine {
	e := &engine{
		client:  opts.HTTPClient,
		baseURL: strings.TrimRight(opts.BaseURL, "/"),
		version: strings.Trim(opts.APIVersion, "/"),
	}
	if e.version == "" {
		e.version = DefaultAPIVersion
	}
	if !strings.HasPrefix(e.version, "v") {
		e.version = "v" + e.version
	}
	if e.baseURL == "" {
		// The host part is never resolved: every connection goes to the socket.
		e.baseURL = "http://docker"
	}
	if e.client == nil {
		socket := opts.Socket
		if socket == "" {
			socket = DefaultSocket
		}
		e.client = &http.Client{Transport: &http.Transport{
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "unix", socket)
			},
			MaxIdleConns:    4,
			IdleConnTimeout: 30 * time.Second,
		}}
		// No client-wide timeout: stopping a container legitimately blocks for the grace
		// period and pulling an image for minutes; the caller's context bounds each call.
	}
	return e
}

// apiError is an answer of the engine outside 2xx, carrying the engine's own message.
type apiError struct {
	Method     string
	Path       string
	StatusCode int
	Message    string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("docker engine: %s %s: %s (HTTP %d)", e.Method, e.Path, e.Message, e.StatusCode)
}

// statusCode is the HTTP status of an engine error, or 0 for any other error (transport,
// decoding), so that callers can tell "the engine said 404" from "the engine is unreachable".
func statusCode(err error) int {
	var ae *apiError
	if errors.As(err, &ae) {
		return ae.StatusCode
	}
	return 0
}

func (e *engine) url(path string, query url.Values, versioned bool) string {
	u := e.baseURL
	if versioned {
		u += "/" + e.version
	}
	u += path
	if len(query) > 0 {
		u += "?" + query.Encode()
	}
	return u
}

// open sends a request and returns the response of a 2xx answer, whose body the caller must
// close; any other answer becomes an *apiError.
func (e *engine) open(ctx context.Context, method, path string, query url.Values, in any, versioned bool) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("docker engine: encode %s %s: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, e.url(path, query, versioned), body)
	if err != nil {
		return nil, fmt.Errorf("docker engine: %s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := e.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("docker engine: %s %s: %w", method, path, err)
	}
	if resp.StatusCode >= 200 && resp.StatusCode < 300 {
		return resp, nil
	}
	defer resp.Body.Close()
	return nil, &apiError{Method: method, Path: path, StatusCode: resp.StatusCode, Message: errorMessage(resp)}
}

// do sends a request and decodes a JSON answer into out, when out is not nil.
func (e *engine) do(ctx context.Context, method, path string, query url.Values, in, out any) error {
	resp, err := e.open(ctx, method, path, query, in, true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20))
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("docker engine: decode answer to %s %s: %w", method, path, err)
	}
	return nil
}

// errorMessage reads the engine's {"message": ...}, falling back to the raw body or the status.
func errorMessage(resp *http.Response) string {
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	var m struct {
		Message string `json:"message"`
	}
	if json.Unmarshal(b, &m) == nil && m.Message != "" {
		return m.Message
	}
	if s := strings.TrimSpace(string(b)); s != "" {
		return s
	}
	return http.StatusText(resp.StatusCode)
}

func (e *engine) ping(ctx context.Context) error {
	resp, err := e.open(ctx, http.MethodGet, "/_ping", nil, nil, false)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<10))
	return nil
}

// Wire types: only the fields this runtime sends or reads, spelled as the Engine API does.

type createRequest struct {
	Image        string              `json:"Image"`
	Entrypoint   []string            `json:"Entrypoint,omitempty"`
	Cmd          []string            `json:"Cmd,omitempty"`
	User         string              `json:"User,omitempty"`
	WorkingDir   string              `json:"WorkingDir,omitempty"`
	Env          []string            `json:"Env"`
	Labels       map[string]string   `json:"Labels"`
	ExposedPorts map[string]struct{} `json:"ExposedPorts"`
	HostConfig   hostConfig          `json:"HostConfig"`
}

type hostConfig struct {
	PortBindings   map[string][]portBinding `json:"PortBindings"`
	RestartPolicy  restartPolicy            `json:"RestartPolicy"`
	DeviceRequests []deviceRequest          `json:"DeviceRequests,omitempty"`
	Binds          []string                 `json:"Binds,omitempty"`
	CapDrop        []string                 `json:"CapDrop"`
	SecurityOpt    []string                 `json:"SecurityOpt"`
	PidsLimit      int64                    `json:"PidsLimit"`
	Privileged     bool                     `json:"Privileged"`
}

type portBinding struct {
	HostIP   string `json:"HostIp"`
	HostPort string `json:"HostPort"`
}

type restartPolicy struct {
	Name string `json:"Name"`
}

type deviceRequest struct {
	Driver    string   `json:"Driver"`
	DeviceIDs []string `json:"DeviceIDs"`
}

type createResponse struct {
	ID       string   `json:"Id"`
	Warnings []string `json:"Warnings"`
}

type containerInspect struct {
	ID    string `json:"Id"`
	Name  string `json:"Name"`
	State struct {
		Status    string `json:"Status"`
		Running   bool   `json:"Running"`
		OOMKilled bool   `json:"OOMKilled"`
		ExitCode  int    `json:"ExitCode"`
		Error     string `json:"Error"`
	} `json:"State"`
	Config struct {
		Labels map[string]string `json:"Labels"`
		Tty    bool              `json:"Tty"`
	} `json:"Config"`
	HostConfig struct {
		PortBindings map[string][]portBinding `json:"PortBindings"`
	} `json:"HostConfig"`
}

type containerSummary struct {
	ID     string            `json:"Id"`
	Labels map[string]string `json:"Labels"`
	State  string            `json:"State"`
	Ports  []struct {
		IP          string `json:"IP"`
		PrivatePort int    `json:"PrivatePort"`
		PublicPort  int    `json:"PublicPort"`
		Type        string `json:"Type"`
	} `json:"Ports"`
}

// pull fetches an image. The engine answers 200 at once and then streams JSON progress
// messages; a failure mid-way arrives as a message with "error", not as an HTTP status.
func (e *engine) pull(ctx context.Context, image string) error {
	from, tag := splitImageRef(image)
	q := url.Values{"fromImage": {from}, "tag": {tag}}
	resp, err := e.open(ctx, http.MethodPost, "/images/create", q, nil, true)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	dec := json.NewDecoder(resp.Body)
	for {
		var m struct {
			Error       string `json:"error"`
			ErrorDetail struct {
				Message string `json:"message"`
			} `json:"errorDetail"`
		}
		if err := dec.Decode(&m); errors.Is(err, io.EOF) {
			return nil
		} else if err != nil {
			return fmt.Errorf("docker engine: pull %s: read progress: %w", image, err)
		}
		msg := m.Error
		if msg == "" {
			msg = m.ErrorDetail.Message
		}
		if msg != "" {
			return fmt.Errorf("docker engine: pull %s: %s", image, msg)
		}
	}
}

// splitImageRef splits an image reference into the fromImage and tag parameters of a pull.
// The tag is never empty: an empty tag would make the engine pull every tag of the repository.
// A digest wins over a tag, as in the docker CLI.
func splitImageRef(ref string) (name, tag string) {
	if i := strings.Index(ref, "@"); i >= 0 {
		name, digest := ref[:i], ref[i+1:]
		// Drop a tag written before the digest ("name:tag@sha256:...").
		if j := strings.LastIndex(name, ":"); j > strings.LastIndex(name, "/") {
			name = name[:j]
		}
		return name, digest
	}
	// A colon after the last slash separates the tag; one before it belongs to a registry
	// host's port ("registry:5000/team/model").
	if j := strings.LastIndex(ref, ":"); j > strings.LastIndex(ref, "/") {
		return ref[:j], ref[j+1:]
	}
	return ref, "latest"
}
