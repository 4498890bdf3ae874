package gateway

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"io"
	"math"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"time"
)

// A websocket is relayed frame by frame after both upgrades: the gateway reads each frame's
// header and copies its payload as it comes, so that it knows where frames end and can put a
// close frame of its own between two of them when it closes a websocket that outlived its
// replica's drain. Payloads are never buffered whole nor looked into.

const (
	// websocketHandshakeTimeout bounds the model server's answer to the upgrade.
	websocketHandshakeTimeout = 30 * time.Second
	// websocketCloseGrace is how long the two ends have to answer the gateway's close frame
	// before their connections are closed.
	websocketCloseGrace = 5 * time.Second
	// websocketDrainCheck is how often an open websocket looks whether its replica drains.
	websocketDrainCheck = 250 * time.Millisecond

	opClose = 0x8
	// closeGoingAway is the close code of an endpoint going away (RFC 6455 7.4.1).
	closeGoingAway = 1001
)

// isWebsocketUpgrade reports whether r asks for a websocket (RFC 6455 4.2.1).
func isWebsocketUpgrade(r *http.Request) bool {
	return headerHasToken(r.Header, "Connection", "upgrade") && headerHasToken(r.Header, "Upgrade", "websocket") &&
		r.Header.Get("Sec-WebSocket-Key") != "" && r.ProtoMajor == 1
}

func headerHasToken(h http.Header, name, token string) bool {
	for _, v := range h[name] {
		for _, f := range strings.Split(v, ",") {
			if strings.EqualFold(strings.TrimSpace(f), token) {
				return true
			}
		}
	}
	return false
}

// websocket opens a websocket to a replica of dep (rep, already counted) and relays it to the
// client until either end closes it, or until the gateway closes it with 1001 when the
// replica has been draining for WebsocketDrainTimeout. The replica stays counted all along,
// so that a drain waits for it.
func (g *Gateway) websocket(w *statusWriter, r *http.Request, dep *deployment, rep *replica, start time.Time) {
	defer rep.release()
	ctx, cancel := context.WithTimeoutCause(r.Context(), min(g.opts.UpstreamTimeout, websocketHandshakeTimeout), errUpstreamTimeout)
	defer cancel()
	conn, err := g.pool.dial(ctx, rep.address)
	if err != nil {
		g.upstreamError(w, ctx, dep, rep, err)
		return
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.nc.SetDeadline(aLongTimeAgo) })
	err = writeUpgrade(conn, r, rep.websocketPath)
	var res *http.Response
	if err == nil {
		if res, err = http.ReadResponse(conn.br, r); err == nil {
			err = checkStatus(res)
		}
	}
	if !stop() && err == nil {
		err = context.Cause(ctx)
		res.Body.Close()
	}
	if err != nil {
		conn.nc.Close()
		g.upstreamError(w, ctx, dep, rep, err)
		return
	}
	w.ttfb = time.Since(start)
	if res.StatusCode != http.StatusSwitchingProtocols {
		// The model server refused the upgrade (a model without a websocket answers 404):
		// the client gets its answer as it is.
		defer conn.nc.Close()
		_ = conn.nc.SetDeadline(time.Now().Add(websocketHandshakeTimeout))
		copyResponseHeader(w.Header(), res.Header)
		w.WriteHeader(res.StatusCode)
		bp := buffers.Get().(*[]byte)
		defer buffers.Put(bp)
		_, _ = copyBody(w, res, false, *bp, nil)
		return
	}
	_ = conn.nc.SetDeadline(time.Time{})
	client, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		conn.nc.Close()
		g.log.WarnContext(r.Context(), "websocket: taking over the client's connection", "deployment_id", dep.id, "err", err)
		writeError(w, http.StatusBadGateway, "deployment %s: the websocket could not be relayed on this connection", dep.id)
		return
	}
	w.status = http.StatusSwitchingProtocols
	var head bytes.Buffer
	head.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n")
	h := http.Header{}
	copyResponseHeader(h, res.Header)
	h.Set(headerRequestID, r.Header.Get(headerRequestID))
	_ = h.Write(&head)
	head.WriteString("\r\n")
	_ = client.SetDeadline(time.Time{})
	if _, err := client.Write(head.Bytes()); err != nil {
		client.Close()
		conn.nc.Close()
		return
	}
	rl := &wsRelay{client: client, server: conn.nc, toClient: make(chan struct{}, 1), toServer: make(chan struct{}, 1)}
	rl.run(brw.Reader, conn.br, rep, g.opts.WebsocketDrainTimeout)
}

// writeUpgrade writes the websocket upgrade request for r to the model server's path.
func writeUpgrade(c *upConn, r *http.Request, path string) error {
	w := c.bw
	w.WriteString("GET ")
	w.WriteString(path)
	if r.URL.RawQuery != "" {
		w.WriteByte('?')
		w.WriteString(r.URL.RawQuery)
	}
	w.WriteString(" HTTP/1.1\r\nHost: ")
	w.WriteString(c.addr)
	w.WriteString("\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n")
	writeHeaders(w, r)
	w.WriteString("\r\n")
	return w.Flush()
}

// wsRelay carries one websocket between the client and the model server.
type wsRelay struct {
	client, server net.Conn
	// toClient and toServer are held while a whole frame is written to that end, so that the
	// gateway's own close frame never lands inside another frame.
	toClient, toServer chan struct{}
	// closing is set once the gateway sent its close frames: later frames are dropped.
	closing atomic.Bool
}

type relayEnd struct {
	fromServer, sawClose bool
}

// run relays until the websocket ends.
func (rl *wsRelay) run(fromClient, fromServer *bufio.Reader, rep *replica, drainTimeout time.Duration) {
	done := make(chan relayEnd, 2)
	go func() {
		sawClose, _ := rl.copyFrames(rl.server, rl.toServer, fromClient, true)
		done <- relayEnd{sawClose: sawClose}
	}()
	go func() {
		sawClose, _ := rl.copyFrames(rl.client, rl.toClient, fromServer, false)
		done <- relayEnd{fromServer: true, sawClose: sawClose}
	}()
	running := 2
	defer func() {
		rl.client.Close()
		rl.server.Close()
		for ; running > 0; running-- {
			<-done
		}
	}()
	tick := time.NewTicker(websocketDrainCheck)
	defer tick.Stop()
	var drained <-chan time.Time
	for {
		select {
		case end := <-done:
			running--
			if end.fromServer && !end.sawClose && !rl.closing.Load() {
				// The model server went away without closing: the client still gets a close.
				rl.goAway(false)
			}
			return
		case <-tick.C:
			if drained == nil && rep.draining.Load() {
				drained = time.After(drainTimeout)
			}
		case <-drained:
			rl.goAway(true)
			select {
			case <-done:
				running--
			case <-time.After(websocketCloseGrace):
			}
			return
		}
	}
}

// goAway sends the client, and the model server too when toServer is set, a close frame 1001
// "going away", and from then on drops whatever else comes.
func (rl *wsRelay) goAway(toServer bool) {
	if take(rl.toClient) {
		rl.closing.Store(true)
		_ = rl.client.SetWriteDeadline(time.Now().Add(websocketCloseGrace))
		_, _ = rl.client.Write(closeFrame(closeGoingAway, "going away", false))
		<-rl.toClient
	}
	rl.closing.Store(true)
	if toServer && take(rl.toServer) {
		_ = rl.server.SetWriteDeadline(time.Now().Add(websocketCloseGrace))
		_, _ = rl.server.Write(closeFrame(closeGoingAway, "going away", true))
		<-rl.toServer
	}
}

// take acquires a frame lock, giving up after a while: a frame stuck halfway is no reason to
// keep a websocket open.
func take(lock chan struct{}) bool {
	t := time.NewTimer(time.Second)
	defer t.Stop()
	select {
	case lock <- struct{}{}:
		return true
	case <-t.C:
		return false
	}
}

// closeFrame encodes a close frame; frames to a server are masked (RFC 6455 5.3).
func closeFrame(code uint16, reason string, masked bool) []byte {
	payload := binary.BigEndian.AppendUint16(nil, code)
	payload = append(payload, reason...)
	f := []byte{0x80 | opClose, byte(len(payload))}
	if masked {
		f[1] |= 0x80
		var key [4]byte
		_, _ = rand.Read(key[:])
		f = append(f, key[:]...)
		for i := range payload {
			payload[i] ^= key[i%4]
		}
	}
	return append(f, payload...)
}

var errFrameTooLarge = errors.New("websocket frame length out of range")

// copyFrames copies frames from src to dst, one whole frame under lock at a time, until src
// ends or a write fails. It reports whether a close frame went through. Once the gateway is
// closing, frames are dropped, and the client's answer to its close ends the copy.
func (rl *wsRelay) copyFrames(dst net.Conn, lock chan struct{}, src *bufio.Reader, fromClient bool) (sawClose bool, err error) {
	var hdr [14]byte
	for {
		if _, err := io.ReadFull(src, hdr[:2]); err != nil {
			return sawClose, err
		}
		n := 2
		switch hdr[1] & 0x7f {
		case 126:
			n += 2
		case 127:
			n += 8
		}
		if hdr[1]&0x80 != 0 {
			n += 4
		}
		if _, err := io.ReadFull(src, hdr[2:n]); err != nil {
			return sawClose, err
		}
		var size uint64
		switch l := hdr[1] & 0x7f; l {
		case 126:
			size = uint64(binary.BigEndian.Uint16(hdr[2:4]))
		case 127:
			size = binary.BigEndian.Uint64(hdr[2:10])
		default:
			size = uint64(l)
		}
		if size > math.MaxInt64 {
			return sawClose, errFrameTooLarge
		}
		isClose := hdr[0]&0x0f == opClose
		lock <- struct{}{}
		if rl.closing.Load() {
			<-lock
			if isClose && fromClient {
				return true, nil // the client answered the gateway's close
			}
			if _, err := io.CopyN(io.Discard, src, int64(size)); err != nil {
				return sawClose, err
			}
			continue
		}
		_, err := dst.Write(hdr[:n])
		if err == nil {
			_, err = io.CopyN(dst, src, int64(size))
		}
		<-lock
		if err != nil {
			return sawClose, err
		}
		sawClose = sawClose || isClose
	}
}
