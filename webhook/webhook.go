// Package webhook signs, checks and sends the notifications that tell a workspace an async
// request has finished: the payload's shape, its HMAC signature, and a sender that refuses
// to reach private networks unless told to.
package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/modelplane/modelplane"
)

// Headers of a delivery.
const (
	HeaderTimestamp  = "X-Modelplane-Timestamp"
	HeaderSignature  = "X-Modelplane-Signature"
	HeaderDeliveryID = "X-Modelplane-Delivery-Id"
	// UserAgent names the sender so that receivers can tell webhooks from other traffic.
	UserAgent = "modelplane-webhook/1"
)

// TypeAsyncRequestCompleted is the payload type of a finished async request.
const TypeAsyncRequestCompleted = "async_request_completed"

// MaxURLLength bounds a webhook URL; longer ones are refused.
const MaxURLLength = 2048

// DefaultTimeout bounds one delivery when NewSender is given none.
const DefaultTimeout = 10 * time.Second

// signatureVersion prefixes each signature, so that a future scheme can be sent beside it.
const signatureVersion = "v1="

// Sign returns the signature header's value for body sent at ts (unix seconds):
// "v1=" and the hex HMAC-SHA256, keyed by secret, of "<ts>.<body>".
func Sign(secret string, ts int64, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(strconv.FormatInt(ts, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return signatureVersion + hex.EncodeToString(mac.Sum(nil))
}

// Errors of Verify, matched with errors.Is.
var (
	// ErrNoTimestamp means the timestamp header is missing or not a number.
	ErrNoTimestamp = errors.New("webhook timestamp missing or malformed")
	// ErrTimestampTooOld means the timestamp is further from now than the tolerance: a
	// replayed delivery, or a clock that is off.
	ErrTimestampTooOld = errors.New("webhook timestamp outside the tolerance")
	// ErrNoSignature means the signature header has no v1 signature.
	ErrNoSignature = errors.New("webhook signature missing")
	// ErrSignatureMismatch means no v1 signature matches the body and timestamp.
	ErrSignatureMismatch = errors.New("webhook signature does not match")
)

// Verify checks a delivery as a receiver would: the timestamp header is within tolerance of
// now (either way), and one of the signature header's comma-separated v1= values is the
// HMAC of "<timestamp>.<body>" under secret. Several values are accepted so that a sender
// can sign with an old and a new secret while a rotation is rolled out. A tolerance of zero
// or less skips the timestamp check.
func Verify(secret string, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	tsText := strings.TrimSpace(h.Get(HeaderTimestamp))
	ts, err := strconv.ParseInt(tsText, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is %q", ErrNoTimestamp, HeaderTimestamp, tsText)
	}
	if tolerance > 0 {
		skew := now.Sub(time.Unix(ts, 0))
		if skew < 0 {
			skew = -skew
		}
		if skew > tolerance {
			return fmt.Errorf("%w: %s is %s from now, more than %s", ErrTimestampTooOld, HeaderTimestamp,
				skew.Truncate(time.Second), tolerance)
		}
	}
	want := []byte(Sign(secret, ts, body))
	found := false
	for _, v := range strings.Split(h.Get(HeaderSignature), ",") {
		v = strings.TrimSpace(v)
		if !strings.HasPrefix(v, signatureVersion) {
			continue
		}
		found = true
		if subtle.ConstantTimeCompare([]byte(v), want) == 1 {
			return nil
		}
	}
	if !found {
		return fmt.Errorf("%w: %s has no %s value", ErrNoSignature, HeaderSignature, signatureVersion)
	}
	return ErrSignatureMismatch
}

// ErrInvalidURL is wrapped by CheckURL's errors about the URL's form (scheme, host, user
// information, length); retrying a delivery to such a URL cannot help.
var ErrInvalidURL = errors.New("invalid webhook URL")

// RefusedError is a webhook address in a range that deliveries may not reach (see
// RefusedReason). Retrying cannot help.
type RefusedError struct {
	Host   string // the URL's host, or the address dialled
	Name   string // the name that resolved to Host, when the refusal came at dial time
	Reason string // which range, e.g. "loopback"
}

func (e *RefusedError) Error() string {
	host := e.Host
	if e.Name != "" && e.Name != e.Host {
		host += " (resolved from " + e.Name + ")"
	}
	return fmt.Sprintf("webhook address %s is refused: %s addresses are not allowed "+
		"(MODELPLANE_WEBHOOK_ALLOW_PRIVATE=true allows them)", host, e.Reason)
}

// IsPermanent reports whether a delivery failed in a way that retrying cannot fix: a refused
// address or a malformed URL. Any other failure (no answer, a status that is not 2xx) may
// pass on a later try.
func IsPermanent(err error) bool {
	var refused *RefusedError
	return errors.As(err, &refused) || errors.Is(err, ErrInvalidURL)
}

// CheckURL checks a webhook URL before it is accepted: http or https, a host, no user
// information, at most MaxURLLength characters, a host that is a name, a dotted-quad IPv4
// address or a bracketed IPv6 address (never a numeric form such as 0x7f000001,
// 2130706433, 127.1 or 0177.0.0.1, which some resolvers read as IPv4 addresses), and, unless
// allowPrivate, a host that is neither "localhost" nor an IP address RefusedReason refuses.
// Names are resolved only when a delivery is sent, where every address is checked again.
func CheckURL(raw string, allowPrivate bool) error {
	if len(raw) > MaxURLLength {
		return fmt.Errorf("%w: it is %d characters long, more than %d", ErrInvalidURL, len(raw), MaxURLLength)
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidURL, errors.Unwrap(err))
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		if u.Scheme == "" {
			return fmt.Errorf("%w: %q has no scheme: use http:// or https://", ErrInvalidURL, raw)
		}
		return fmt.Errorf("%w: scheme %q is not allowed: use http or https", ErrInvalidURL, u.Scheme)
	}
	if u.User != nil {
		return fmt.Errorf("%w: user information (user:password@) is not allowed; authenticate the webhook by its signature", ErrInvalidURL)
	}
	host := u.Hostname()
	if host == "" {
		return fmt.Errorf("%w: %q has no host", ErrInvalidURL, raw)
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("%w: port %q is not 1-65535", ErrInvalidURL, p)
		}
	}
	ip, ipErr := netip.ParseAddr(host)
	if ipErr != nil && (strings.Contains(host, ":") || numericHost(host)) {
		return fmt.Errorf("%w: host %q is a numeric address in a form other than a dotted-quad "+
			"IPv4 address (such as 93.184.216.34) or a bracketed IPv6 address: hexadecimal, octal, "+
			"single-number, shortened and zero-padded forms are not accepted", ErrInvalidURL, host)
	}
	if allowPrivate {
		return nil
	}
	name := strings.TrimSuffix(strings.ToLower(host), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return &RefusedError{Host: host, Reason: "loopback"}
	}
	if ipErr == nil {
		if reason := RefusedReason(ip); reason != "" {
			return &RefusedError{Host: host, Reason: reason}
		}
	}
	return nil
}

// Delivery is one try at sending a payload.
type Delivery struct {
	URL    string
	Secret string
	// DeliveryID is sent in X-Modelplane-Delivery-Id; it is the same on every try, so that a
	// receiver can drop a delivery it has already handled.
	DeliveryID string
	Body       []byte
	// At is when the delivery is signed; zero means now. Each try should be signed anew, so
	// that receivers that check the timestamp accept a late retry.
	At time.Time
}

// Sender posts deliveries. It is safe for concurrent use.
type Sender struct {
	client       *http.Client
	allowPrivate bool
	dialer       *net.Dialer
	// resolver finds a name's addresses when a delivery is dialled; net.DefaultResolver
	// unless a test sets another.
	resolver interface {
		LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
	}
}

// maxAnswerBody bounds how much of a receiver's answer is read: enough for an error message.
const maxAnswerBody = 4 << 10

// NewSender returns a sender whose connections may reach only public addresses, unless
// allowPrivate, and whose deliveries each take at most timeout (DefaultTimeout when zero or
// less). It uses no proxy, so that the address checked is the address reached, and it does
// not follow redirects.
func NewSender(allowPrivate bool, timeout time.Duration) *Sender {
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	s := &Sender{allowPrivate: allowPrivate, dialer: &net.Dialer{Timeout: timeout}, resolver: net.DefaultResolver}
	if !allowPrivate {
		// A second check of the address each socket connects to, whatever dialled it.
		s.dialer.Control = refuseDial
	}
	transport := &http.Transport{
		Proxy:                  nil,
		DialContext:            s.dial,
		ForceAttemptHTTP2:      true,
		TLSHandshakeTimeout:    timeout,
		ResponseHeaderTimeout:  timeout,
		MaxIdleConnsPerHost:    4,
		IdleConnTimeout:        90 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	s.client = &http.Client{
		Transport: transport,
		Timeout:   timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}
	return s
}

// dial resolves address's host, checks every address it resolves to with RefusedReason
// (unless private addresses are allowed), refusing the delivery if any one is refused, and
// connects to the first address that answers. Checking after resolution, on the addresses
// actually dialled, means that a name that resolves to a private address (or starts to,
// between the check of the URL and the send) is refused too.
func (s *Sender) dial(ctx context.Context, network, address string) (net.Conn, error) {
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &RefusedError{Host: address, Reason: "unparsable"}
	}
	var addrs []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{ip}
	} else {
		lookup := "ip"
		switch network {
		case "tcp4":
			lookup = "ip4"
		case "tcp6":
			lookup = "ip6"
		}
		if addrs, err = s.resolver.LookupNetIP(ctx, lookup, host); err != nil {
			return nil, err
		}
		if len(addrs) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
		// The resolver may give an A record as ::ffff:a.b.c.d; either way it is a.b.c.d.
		for i := range addrs {
			addrs[i] = addrs[i].Unmap()
		}
	}
	if !s.allowPrivate {
		for _, ip := range addrs {
			if reason := RefusedReason(ip); reason != "" {
				return nil, &RefusedError{Host: ip.String(), Name: host, Reason: reason}
			}
		}
	}
	var first error
	for _, ip := range addrs {
		conn, err := s.dialer.DialContext(ctx, network, net.JoinHostPort(ip.String(), port))
		if err == nil {
			return conn, nil
		}
		var refused *RefusedError
		if errors.As(err, &refused) {
			return nil, refused
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// refuseDial is the dialer's check of each address it is about to connect to.
func refuseDial(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return &RefusedError{Host: address, Reason: "unparsable"}
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return &RefusedError{Host: address, Reason: "unparsable"}
	}
	if reason := RefusedReason(ip); reason != "" {
		return &RefusedError{Host: host, Reason: reason}
	}
	return nil
}

// Send posts d.Body to d.URL, signed with d.Secret. It returns nil for a 2xx answer, an
// error that IsPermanent for a malformed URL or a refused address, and another error (with
// the answer's status, when there was one) for any other failure, redirects included.
func (s *Sender) Send(ctx context.Context, d Delivery) error {
	if err := CheckURL(d.URL, s.allowPrivate); err != nil {
		return err
	}
	return s.post(ctx, d)
}

// post sends d without checking its URL first; the dialer's check still applies.
func (s *Sender) post(ctx context.Context, d Delivery) error {
	at := d.At
	if at.IsZero() {
		at = time.Now()
	}
	ts := at.Unix()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, d.URL, bytes.NewReader(d.Body))
	if err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidURL, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", UserAgent)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(d.Secret, ts, d.Body))
	if d.DeliveryID != "" {
		req.Header.Set(HeaderDeliveryID, d.DeliveryID)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		var refused *RefusedError
		if errors.As(err, &refused) {
			return refused
		}
		// url.Error repeats the whole URL, query included; the message names it redacted.
		var urlErr *url.Error
		if errors.As(err, &urlErr) {
			err = urlErr.Err
		}
		return fmt.Errorf("webhook %s: %w", redacted(req.URL), err)
	}
	defer resp.Body.Close()
	answer, _ := io.ReadAll(io.LimitReader(resp.Body, maxAnswerBody))
	// Drain a little more so that the connection can be reused, but never a runaway body.
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		return nil
	}
	if resp.StatusCode >= 300 && resp.StatusCode <= 399 {
		return fmt.Errorf("webhook %s answered %s redirecting to %q: redirects are not followed",
			redacted(req.URL), resp.Status, resp.Header.Get("Location"))
	}
	msg := fmt.Sprintf("webhook %s answered %s", redacted(req.URL), resp.Status)
	if text := firstLine(answer); text != "" {
		msg += ": " + text
	}
	return errors.New(msg)
}

// redacted is the URL for messages: without its query, which may carry a token.
func redacted(u *url.URL) string {
	c := *u
	c.RawQuery, c.ForceQuery, c.Fragment = "", false, ""
	return c.Redacted()
}

// firstLine is the start of a receiver's answer, for an error message.
func firstLine(b []byte) string {
	if !utf8.Valid(b) {
		return ""
	}
	s, _, _ := strings.Cut(strings.TrimSpace(string(b)), "\n")
	s = strings.TrimSpace(s)
	if len(s) > 200 {
		s = s[:200] + "..."
	}
	return s
}

// Payload is the JSON body of a delivery.
type Payload struct {
	RequestID    string          `json:"request_id"`
	ModelID      string          `json:"model_id"`
	DeploymentID string          `json:"deployment_id"`
	Type         string          `json:"type"` // TypeAsyncRequestCompleted
	Time         time.Time       `json:"time"`
	Data         json.RawMessage `json:"data"`   // the model's output (see DataJSON); null when none
	Errors       []ErrorEntry    `json:"errors"` // empty, never null
}

// ErrorEntry is one error of a request: a code such as MODEL_PREDICT_ERROR, a message, and
// the attempt it happened on (0 for errors outside an attempt, such as expiry).
type ErrorEntry struct {
	Code    modelplane.ErrorCode `json:"code"`
	Message string               `json:"message"`
	Attempt int                  `json:"attempt"`
}

// MarshalJSON writes the payload with its time in UTC RFC 3339, data null when there is
// none, and errors [] when there are none, so that receivers need not handle absent fields.
func (p Payload) MarshalJSON() ([]byte, error) {
	type plain Payload
	out := plain(p)
	out.Time = p.Time.UTC()
	if len(out.Data) == 0 {
		out.Data = json.RawMessage("null")
	}
	if out.Errors == nil {
		out.Errors = []ErrorEntry{}
	}
	return json.Marshal(out)
}

// DataJSON is a model's output as the payload's data: the output itself when it is JSON
// (and its content type, when given, is a JSON type), else the output as a JSON string;
// null when there is no output.
func DataJSON(output []byte, contentType string) json.RawMessage {
	if len(bytes.TrimSpace(output)) == 0 {
		return json.RawMessage("null")
	}
	if isJSONType(contentType) && json.Valid(output) {
		return json.RawMessage(output)
	}
	b, _ := json.Marshal(string(output)) // a string always encodes
	return b
}

// isJSONType reports whether a content type says JSON: application/json, a +json type, or
// none at all (the body then decides).
func isJSONType(contentType string) bool {
	if strings.TrimSpace(contentType) == "" {
		return true
	}
	mt, _, err := mime.ParseMediaType(contentType)
	if err != nil {
		return false
	}
	return mt == "application/json" || strings.HasSuffix(mt, "+json")
}
