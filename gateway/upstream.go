package gateway

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The gateway speaks HTTP/1.1 to model servers itself rather than through net/http's
// Transport: the request is written and the answer read by the goroutine that serves the
// client, over a pooled keep-alive connection, without the Transport's two goroutines per
// connection and the hand-offs between them. On a machine where the gateway shares its cores
// with the model servers, that halves what a forwarded request costs (bench/RESULTS.md).

// pool keeps idle keep-alive connections to model servers, by address.
type pool struct {
	mu      sync.Mutex
	idle    map[string][]*upConn
	maxIdle int           // per address
	maxAge  time.Duration // idle longer than this: closed rather than reused
	dialer  net.Dialer
}

func newPool() *pool {
	return &pool{
		idle:    map[string][]*upConn{},
		maxIdle: 512,
		// Below the shortest keep-alive timeout model servers commonly use (uvicorn's 5 s),
		// so a reused connection is rarely one the server is closing.
		maxAge: 4 * time.Second,
		dialer: net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second},
	}
}

type upConn struct {
	addr  string
	nc    net.Conn
	br    *bufio.Reader
	bw    *bufio.Writer
	since time.Time // when it went idle
}

// get returns an idle connection to addr, or nil.
func (p *pool) get(addr string) *upConn {
	now := time.Now()
	p.mu.Lock()
	defer p.mu.Unlock()
	for {
		list := p.idle[addr]
		if len(list) == 0 {
			return nil
		}
		c := list[len(list)-1]
		p.idle[addr] = list[:len(list)-1]
		if now.Sub(c.since) < p.maxAge {
			return c
		}
		go c.nc.Close()
	}
}

func (p *pool) dial(ctx context.Context, addr string) (*upConn, error) {
	nc, err := p.dialer.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	return &upConn{addr: addr, nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 16<<10)}, nil
}

func (p *pool) put(c *upConn) {
	c.since = time.Now()
	p.mu.Lock()
	if len(p.idle[c.addr]) < p.maxIdle {
		p.idle[c.addr] = append(p.idle[c.addr], c)
		c = nil
	}
	p.mu.Unlock()
	if c != nil {
		c.nc.Close()
	}
}

// closeIdle closes every idle connection.
func (p *pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = map[string][]*upConn{}
	p.mu.Unlock()
	for _, list := range idle {
		for _, c := range list {
			c.nc.Close()
		}
	}
}

// Headers that describe one connection, not the request: never forwarded (RFC 9110 7.6.1).
// Authorization is the caller's modelplane key, which the model has no business seeing.
var hopHeaders = map[string]bool{
	"Connection": true, "Proxy-Connection": true, "Keep-Alive": true, "Proxy-Authenticate": true,
	"Proxy-Authorization": true, "Te": true, "Trailer": true, "Transfer-Encoding": true, "Upgrade": true,
	"Authorization": true,
}

// connectionListed reports whether h's Connection header names the header name.
func connectionListed(h http.Header, name string) bool {
	for _, v := range h["Connection"] {
		for _, f := range strings.Split(v, ",") {
			if textproto.CanonicalMIMEHeaderKey(strings.TrimSpace(f)) == name {
				return true
			}
		}
	}
	return false
}

// writeRequest writes r's request line, headers and body to c. body is nil when the request
// has none; a known length is sent as Content-Length, an unknown one chunked.
func writeRequest(c *upConn, r *http.Request, path string, body io.Reader, length int64, buf []byte) error {
	w := c.bw
	w.WriteString(r.Method)
	w.WriteByte(' ')
	w.WriteString(path)
	if r.URL.RawQuery != "" {
		w.WriteByte('?')
		w.WriteString(r.URL.RawQuery)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(c.addr)
	w.WriteString("\r\n")
	writeHeaders(w, r)
	switch {
	case body == nil:
		w.WriteString("Content-Length: 0\r\n\r\n")
	case length >= 0:
		w.WriteString("Content-Length: ")
		w.WriteString(strconv.FormatInt(length, 10))
		w.WriteString("\r\n\r\n")
		if _, err := io.CopyBuffer(w, io.LimitReader(body, length), buf); err != nil {
			return err
		}
	default:
		w.WriteString("Transfer-Encoding: chunked\r\n\r\n")
		cw := httputil.NewChunkedWriter(w)
		if _, err := io.CopyBuffer(cw, body, buf); err != nil {
			return err
		}
		if err := cw.Close(); err != nil {
			return err
		}
		w.WriteString("\r\n")
	}
	return w.Flush()
}

// writeHeaders writes r's end-to-end headers, less Content-Length, and X-Forwarded-For.
func writeHeaders(w *bufio.Writer, r *http.Request) {
	hasConnection := len(r.Header["Connection"]) > 0
	for k, vs := range r.Header {
		if hopHeaders[k] || k == "Content-Length" || k == "X-Forwarded-For" || (hasConnection && connectionListed(r.Header, k)) {
			continue
		}
		for _, v := range vs {
			w.WriteString(k)
			w.WriteString(": ")
			w.WriteString(headerValue(v))
			w.WriteString("\r\n")
		}
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		w.WriteString("X-Forwarded-For: ")
		if prior := r.Header.Get("X-Forwarded-For"); prior != "" {
			w.WriteString(headerValue(prior))
			w.WriteString(", ")
		}
		w.WriteString(ip)
		w.WriteString("\r\n")
	}
}

// headerValue drops line breaks, which would let a value start a header of its own.
func headerValue(v string) string {
	if strings.ContainsAny(v, "\r\n") {
		return strings.NewReplacer("\r", " ", "\n", " ").Replace(v)
	}
	return v
}

// checkStatus refuses an answer whose status HTTP does not have: net/http reads any three
// digits ("000", "+42"), and passing one under 100 on would make net/http panic, so the
// answer counts as malformed and the client gets a 502.
func checkStatus(res *http.Response) error {
	if res.StatusCode < 100 {
		res.Body.Close()
		return fmt.Errorf("malformed answer: status %q", res.Status)
	}
	return nil
}

// copyResponseHeader copies the answer's end-to-end headers to the client's.
func copyResponseHeader(dst, src http.Header) {
	hasConnection := len(src["Connection"]) > 0
	for k, vs := range src {
		if hopHeaders[k] && k != "Authorization" || (hasConnection && connectionListed(src, k)) {
			continue
		}
		if k == headerRequestID && len(dst[k]) > 0 {
			continue
		}
		dst[k] = vs
	}
}

// streaming reports whether an answer must reach the client as it comes: events, or a body
// of unknown length (a generated stream).
func streaming(res *http.Response) bool {
	if res.ContentLength < 0 {
		return true
	}
	ct := res.Header.Get("Content-Type")
	return strings.HasPrefix(ct, "text/event-stream")
}

// copyBody copies the answer to the client, flushing after every read when it streams, and
// calling onRead (when set) after every read that brought something.
// It reports whether the whole answer was read (so the connection can be reused) and the
// first error of either side.
func copyBody(w http.ResponseWriter, res *http.Response, flush bool, buf []byte, onRead func()) (complete bool, err error) {
	flusher, _ := w.(http.Flusher)
	for {
		n, rerr := res.Body.Read(buf)
		if n > 0 {
			if onRead != nil {
				onRead()
			}
			if _, werr := w.Write(buf[:n]); werr != nil {
				return false, fmt.Errorf("writing to the client: %w", werr)
			}
			if flush && flusher != nil {
				flusher.Flush()
			}
		}
		if errors.Is(rerr, io.EOF) {
			return true, nil
		}
		if rerr != nil {
			return false, rerr
		}
	}
}

// aLongTimeAgo is a deadline in the past: setting it interrupts a blocked read or write.
var aLongTimeAgo = time.Unix(1, 0)
