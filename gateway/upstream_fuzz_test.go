package gateway

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

// fuzzUpstreamTimeout bounds each forwarded request of FuzzForwardAnswer: the fake model
// server closes the connection once it has answered, so no call may come near it.
const fuzzUpstreamTimeout = 5 * time.Second

// fakeModelServer is a model server on a loopback listener that reads each request and
// writes the answer it is given for it as it is, then closes the connection. One serves all
// the inputs of a fuzz process: a listener each would use up the loopback's ports.
type fakeModelServer struct {
	addr    string
	answers chan []byte
	handled chan struct{}
}

var (
	fakeOnce   sync.Once
	fakeServer *fakeModelServer
	fakeErr    error
)

func theFakeModelServer(t *testing.T) *fakeModelServer {
	t.Helper()
	fakeOnce.Do(func() {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			fakeErr = err
			return
		}
		fakeServer = &fakeModelServer{addr: ln.Addr().String(), answers: make(chan []byte, 1), handled: make(chan struct{}, 1)}
		go fakeServer.serve(ln)
	})
	if fakeErr != nil {
		t.Fatal(fakeErr)
	}
	return fakeServer
}

func (s *fakeModelServer) serve(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_ = c.SetDeadline(time.Now().Add(fuzzUpstreamTimeout))
		if req, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
			_, _ = io.Copy(io.Discard, req.Body)
			select {
			case answer := <-s.answers:
				_, _ = c.Write(answer)
			default:
			}
		}
		c.Close()
		select {
		case s.handled <- struct{}{}:
		default:
		}
	}
}

// answer has the server answer the next request with answer. The returned function waits
// until the connection is closed, and must be called before the next answer.
func (s *fakeModelServer) answer(answer []byte) (wait func()) {
	select {
	case <-s.answers:
	default:
	}
	select {
	case <-s.handled:
	default:
	}
	s.answers <- answer
	return func() {
		select {
		case <-s.handled:
		case <-time.After(fuzzUpstreamTimeout):
		}
	}
}

// answerSeeds are model servers' answers: good ones of each kind, and broken ones.
var answerSeeds = []string{
	"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n\r\n{\"ok\":true}",
	"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello",
	"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nshort",
	"HTTP/1.1 503 Service Unavailable\r\nConnection: close, X-Secret\r\nX-Secret: s\r\nRetry-After: 1\r\n\r\n",
	"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n",
	"HTTP/1.0 200 OK\r\n\r\nbody until close",
	"HTTP/1.1 000 Zero\r\nContent-Length: 0\r\n\r\n",
	"HTTP/1.1 +42 Plus\r\n\r\n",
	"HTTP/1.1 2000 OK\r\n\r\n",
	"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
	"HTTP/1.1 200 OK\r\nbad header\r\n\r\n",
	"HTTP/2 200\r\n\r\n",
	"SSH-2.0-OpenSSH_9.6\r\n",
	"",
}

// FuzzForwardAnswer forwards a request to a model server that answers arbitrary bytes. The
// gateway never panics but to abort a client whose answer broke off after its status was
// sent (net/http's ErrAbortHandler, as cutShort does), never waits for its timeout, and
// answers what is not an HTTP answer with a 502; a well-formed answer's status is passed on.
func FuzzForwardAnswer(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s), false)
	}
	f.Add([]byte("HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\n"), true)
	f.Fuzz(func(t *testing.T, answer []byte, streamTimeout bool) {
		srv := theFakeModelServer(t)
		wait := srv.answer(answer)
		defer wait()
		g := &Gateway{
			opts: Options{MaxBodyBytes: 1 << 20, UpstreamTimeout: fuzzUpstreamTimeout},
			log:  slog.New(slog.DiscardHandler),
			pool: newPool(),
		}
		defer g.pool.closeIdle()
		dep := &deployment{id: "dep"}
		if streamTimeout {
			dep.streamingReadTimeout = time.Second
		}
		rep := &replica{id: "rep", address: srv.addr, predictPath: DefaultPredictPath}
		rep.inFlight.Add(1)

		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzUpstreamTimeout)
		defer cancel()
		r := httptest.NewRequest(http.MethodPost, "/production/predict", strings.NewReader(`{"x": 1}`)).WithContext(ctx)
		rec := httptest.NewRecorder()
		w := &statusWriter{ResponseWriter: rec}
		start := time.Now()
		aborted := func() (aborted bool) {
			defer func() {
				if v := recover(); v != nil {
					if v != http.ErrAbortHandler {
						t.Fatalf("forward panicked: %v", v)
					}
					aborted = true
				}
			}()
			g.forward(w, r, dep, rep, start, "")
			return false
		}()
		elapsed := time.Since(start)

		if n := rep.inFlight.Load(); n != 0 {
			t.Errorf("the replica counts %d requests after the answer", n)
		}
		if elapsed >= fuzzUpstreamTimeout || w.status == http.StatusGatewayTimeout || w.status == statusClientClosed {
			t.Fatalf("forward waited %s for an upstream that had closed (status %d)", elapsed, w.status)
		}
		if w.status < 100 || w.status > 999 {
			t.Fatalf("forward wrote status %d", w.status)
		}
		want, ok := parsedStatus(answer)
		switch {
		case !ok && w.status != http.StatusBadGateway:
			t.Fatalf("an answer that is not HTTP is relayed with status %d, want 502:\n%q", w.status, answer)
		case ok && w.status != want:
			t.Fatalf("status %d relayed as %d", want, w.status)
		case aborted && !ok:
			t.Fatalf("aborted before a status was sent")
		}
	})
}

// FuzzWebsocketHandshake opens a websocket to a model server that answers the upgrade with
// arbitrary bytes. The gateway never panics, answers what is not an HTTP answer with a 502
// and passes a refusal's status on. (A 101 is a 502 here: the recorder cannot be taken over.)
func FuzzWebsocketHandshake(f *testing.F) {
	for _, s := range answerSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, answer []byte) {
		srv := theFakeModelServer(t)
		wait := srv.answer(answer)
		defer wait()
		g := &Gateway{
			opts: Options{MaxBodyBytes: 1 << 20, UpstreamTimeout: fuzzUpstreamTimeout},
			log:  slog.New(slog.DiscardHandler),
			pool: newPool(),
		}
		dep := &deployment{id: "dep"}
		rep := &replica{id: "rep", address: srv.addr, websocketPath: "/ws"}
		rep.inFlight.Add(1)
		ctx, cancel := context.WithTimeout(context.Background(), 2*fuzzUpstreamTimeout)
		defer cancel()
		r := httptest.NewRequest(http.MethodGet, "/production/websocket", nil).WithContext(ctx)
		r.Header.Set("Connection", "Upgrade")
		r.Header.Set("Upgrade", "websocket")
		w := &statusWriter{ResponseWriter: httptest.NewRecorder()}
		start := time.Now()
		func() {
			defer func() {
				if v := recover(); v != nil {
					t.Fatalf("websocket panicked: %v", v)
				}
			}()
			g.websocket(w, r, dep, rep, start)
		}()
		if elapsed := time.Since(start); elapsed >= fuzzUpstreamTimeout {
			t.Fatalf("websocket waited %s for an upstream that had closed", elapsed)
		}
		if n := rep.inFlight.Load(); n != 0 {
			t.Errorf("the replica counts %d requests after the handshake", n)
		}
		res, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(answer)), nil)
		switch {
		case err != nil || res.StatusCode < 100 || res.StatusCode == http.StatusSwitchingProtocols:
			if w.status != http.StatusBadGateway {
				t.Fatalf("handshake answer %q gave status %d, want 502", answer, w.status)
			}
		case w.status != res.StatusCode:
			t.Fatalf("status %d relayed as %d", res.StatusCode, w.status)
		}
	})
}

// parsedStatus is the status of the first final answer in answer as net/http reads it, and
// whether there is one that the gateway relays (a status of three digits from 100 up).
func parsedStatus(answer []byte) (int, bool) {
	br := bufio.NewReader(bytes.NewReader(answer))
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil || res.StatusCode < 100 {
			return 0, false
		}
		if res.StatusCode >= 200 {
			return res.StatusCode, true
		}
	}
}
