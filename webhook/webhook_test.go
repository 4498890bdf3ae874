package webhook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testSecret = "whsec_0123456789abcdefghijklmnopqrstuvwxyzABCDEFG"

// receiverSignature is what a receiver computes from the documentation's words alone:
// hex HMAC-SHA256 keyed by the secret over "<timestamp>.<body>".
func receiverSignature(secret, timestamp string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(timestamp + "." + string(body)))
	return hex.EncodeToString(mac.Sum(nil))
}

func TestSign_IsTheHMACAReceiverComputesFromTheSecret(t *testing.T) {
	body := []byte(`{"request_id":"r1","data":{"x":1}}`)
	got := Sign(testSecret, 1700000000, body)
	require.Equal(t, "v1="+receiverSignature(testSecret, "1700000000", body), got)
	require.NotEqual(t, got, Sign("whsec_another_secret_of_enough_length_00000", 1700000000, body),
		"another secret must give another signature")
}

func signedHeader(secret string, ts int64, body []byte) http.Header {
	h := http.Header{}
	h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	h.Set(HeaderSignature, Sign(secret, ts, body))
	return h
}

func TestVerify_AcceptsAFreshSignatureAmongSeveralValues(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"a":1}`)
	h := signedHeader(testSecret, now.Unix(), body)
	require.NoError(t, Verify(testSecret, h, body, now, 5*time.Minute))

	// A sender rolling out a new secret sends both signatures; either secret verifies.
	old := Sign("whsec_the_old_secret_0000000000000000000000", now.Unix(), body)
	h.Set(HeaderSignature, old+", "+Sign(testSecret, now.Unix(), body)+",v0=ignored")
	require.NoError(t, Verify(testSecret, h, body, now, 5*time.Minute))
	require.NoError(t, Verify("whsec_the_old_secret_0000000000000000000000", h, body, now, 5*time.Minute))

	// Slightly in the future (a receiver's clock behind) is within tolerance too.
	require.NoError(t, Verify(testSecret, signedHeader(testSecret, now.Unix()+60, body), body, now, 5*time.Minute))
}

func TestVerify_TamperedOrStaleDeliveriesFail(t *testing.T) {
	now := time.Unix(1700000000, 0)
	body := []byte(`{"request_id":"r1"}`)
	good := func() http.Header { return signedHeader(testSecret, now.Unix(), body) }
	for _, tc := range []struct {
		name   string
		header http.Header
		body   []byte
		secret string
		want   error
	}{
		{"tampered body", good(), []byte(`{"request_id":"r2"}`), testSecret, ErrSignatureMismatch},
		{"tampered timestamp", func() http.Header {
			h := good()
			h.Set(HeaderTimestamp, strconv.FormatInt(now.Unix()+1, 10))
			return h
		}(), body, testSecret, ErrSignatureMismatch},
		{"wrong secret", good(), body, "whsec_not_the_secret_0000000000000000000000", ErrSignatureMismatch},
		{"old timestamp, validly signed", signedHeader(testSecret, now.Add(-6*time.Minute).Unix(), body), body, testSecret, ErrTimestampTooOld},
		{"future timestamp, validly signed", signedHeader(testSecret, now.Add(6*time.Minute).Unix(), body), body, testSecret, ErrTimestampTooOld},
		{"no timestamp", func() http.Header { h := good(); h.Del(HeaderTimestamp); return h }(), body, testSecret, ErrNoTimestamp},
		{"timestamp not a number", func() http.Header { h := good(); h.Set(HeaderTimestamp, "yesterday"); return h }(), body, testSecret, ErrNoTimestamp},
		{"no signature", func() http.Header { h := good(); h.Del(HeaderSignature); return h }(), body, testSecret, ErrNoSignature},
		{"only an unknown scheme", func() http.Header { h := good(); h.Set(HeaderSignature, "v2=abc"); return h }(), body, testSecret, ErrNoSignature},
		{"bare hex without v1=", func() http.Header {
			h := good()
			h.Set(HeaderSignature, strings.TrimPrefix(h.Get(HeaderSignature), "v1="))
			return h
		}(), body, testSecret, ErrNoSignature},
	} {
		t.Run(tc.name, func(t *testing.T) {
			err := Verify(tc.secret, tc.header, tc.body, now, 5*time.Minute)
			require.ErrorIs(t, err, tc.want)
		})
	}
}

func TestCheckURL_RefusesEachBadPartWithAMessageNamingIt(t *testing.T) {
	for _, tc := range []struct {
		url       string
		wantParts []string // in the message; empty means accepted
		refused   bool     // a *RefusedError rather than ErrInvalidURL
	}{
		{url: "https://hooks.example.com/modelplane?token=x"},
		{url: "http://hooks.example.com:8080/h"},
		{url: "HTTPS://Hooks.Example.com/h"},
		{url: "https://93.184.216.34/h"},
		{url: "https://[2606:2800:220:1:248:1893:25c8:1946]/h"},
		{url: "ftp://hooks.example.com/h", wantParts: []string{`scheme "ftp"`, "http or https"}},
		{url: "hooks.example.com/h", wantParts: []string{"no scheme"}},
		{url: "https:///h", wantParts: []string{"no host"}},
		{url: "https://user:pass@hooks.example.com/h", wantParts: []string{"user information"}},
		{url: "https://hooks.example.com:70000/h", wantParts: []string{`port "70000"`}},
		{url: "https://hooks.example.com/" + strings.Repeat("a", MaxURLLength), wantParts: []string{"2074 characters", "2048"}},
		{url: "https://hooks example.com/", wantParts: []string{"invalid character"}},
		{url: "http://localhost:8000/h", wantParts: []string{"localhost", "loopback"}, refused: true},
		{url: "http://LOCALHOST./h", wantParts: []string{"loopback"}, refused: true},
		{url: "http://api.localhost/h", wantParts: []string{"loopback"}, refused: true},
		{url: "http://127.0.0.1/h", wantParts: []string{"127.0.0.1", "loopback"}, refused: true},
		{url: "http://127.8.9.10/h", wantParts: []string{"loopback"}, refused: true},
		{url: "http://[::1]:9000/h", wantParts: []string{"::1", "loopback"}, refused: true},
		{url: "http://[::ffff:127.0.0.1]/h", wantParts: []string{"loopback"}, refused: true},
		{url: "http://10.1.2.3/h", wantParts: []string{"private"}, refused: true},
		{url: "http://172.16.0.1/h", wantParts: []string{"private"}, refused: true},
		{url: "http://192.168.1.1/h", wantParts: []string{"private"}, refused: true},
		{url: "http://[fd00::1]/h", wantParts: []string{"private"}, refused: true},
		{url: "http://169.254.169.254/latest/meta-data", wantParts: []string{"169.254.169.254", "link-local"}, refused: true},
		{url: "http://[fe80::1%25eth0]/h", wantParts: []string{"link-local"}, refused: true},
		{url: "http://224.0.0.251/h", wantParts: []string{"link-local multicast"}, refused: true},
		{url: "http://[ff02::1]/h", wantParts: []string{"link-local multicast"}, refused: true},
		{url: "http://239.1.2.3/h", wantParts: []string{"multicast"}, refused: true},
		{url: "http://[ff05::2]/h", wantParts: []string{"multicast"}, refused: true},
		{url: "http://0.0.0.0:8080/h", wantParts: []string{"unspecified"}, refused: true},
		{url: "http://[::]/h", wantParts: []string{"unspecified"}, refused: true},
		{url: "http://100.64.0.1/h", wantParts: []string{"100.64.0.0/10"}, refused: true},
		{url: "http://100.127.255.254/h", wantParts: []string{"100.64.0.0/10"}, refused: true},
		{url: "http://100.128.0.1/h"}, // just outside the shared range
		// IPv6 forms that embed an IPv4 address are judged by the address they embed.
		{url: "http://[::7f00:1]/h", wantParts: []string{"loopback", "IPv4-compatible", "127.0.0.1"}, refused: true},
		{url: "http://[::ffff:7f00:1]/h", wantParts: []string{"loopback", "IPv4-mapped"}, refused: true},
		{url: "http://[::ffff:10.0.0.1]/h", wantParts: []string{"private"}, refused: true},
		{url: "http://[64:ff9b::7f00:1]/h", wantParts: []string{"loopback", "NAT64", "127.0.0.1"}, refused: true},
		{url: "http://[64:ff9b::a9fe:a9fe]/h", wantParts: []string{"link-local", "NAT64", "169.254.169.254"}, refused: true},
		{url: "http://[64:ff9b:1::5db8:d822]/h", wantParts: []string{"NAT64 local-use"}, refused: true},
		{url: "http://[2002:7f00:1::]/h", wantParts: []string{"loopback", "6to4", "127.0.0.1"}, refused: true},
		{url: "http://[2002:a00:1::1]/h", wantParts: []string{"private", "6to4", "10.0.0.1"}, refused: true},
		{url: "http://[2001:0:4136:e378:8000:63bf:3fff:fdd2]/h", wantParts: []string{"Teredo"}, refused: true},
		{url: "http://[2001::1]/h", wantParts: []string{"Teredo"}, refused: true},
		{url: "http://[64:ff9b::5db8:d822]/h"}, // NAT64 of 93.184.216.34
		{url: "http://[2002:5db8:d822::1]/h"},  // 6to4 of 93.184.216.34
		{url: "http://[fec0::1]/h", wantParts: []string{"site-local"}, refused: true},
		{url: "http://[fc00::1]/h", wantParts: []string{"private"}, refused: true},
		{url: "http://[2001:db8::1]/h", wantParts: []string{"documentation"}, refused: true},
		{url: "http://[100::1]/h", wantParts: []string{"reserved"}, refused: true},
		{url: "http://255.255.255.255/h", wantParts: []string{"broadcast"}, refused: true},
		{url: "http://192.0.2.1/h", wantParts: []string{"documentation"}, refused: true},
		{url: "http://198.51.100.7/h", wantParts: []string{"documentation"}, refused: true},
		{url: "http://203.0.113.9/h", wantParts: []string{"documentation"}, refused: true},
		{url: "http://198.18.0.1/h", wantParts: []string{"benchmarking"}, refused: true},
		{url: "http://198.19.255.255/h", wantParts: []string{"benchmarking"}, refused: true},
		{url: "http://240.0.0.1/h", wantParts: []string{"reserved"}, refused: true},
		{url: "http://192.0.0.8/h", wantParts: []string{"reserved"}, refused: true},
		{url: "http://0.1.2.3/h", wantParts: []string{"unspecified"}, refused: true},
		// Numeric forms that some resolvers and dialers read as IPv4 addresses.
		{url: "http://0x7f000001/h", wantParts: []string{`"0x7f000001"`, "numeric address"}},
		{url: "http://0X7F000001:8080/h", wantParts: []string{"numeric address"}},
		{url: "http://2130706433/h", wantParts: []string{`"2130706433"`, "numeric address"}},
		{url: "http://127.1/h", wantParts: []string{`"127.1"`, "numeric address"}},
		{url: "http://017700000001/h", wantParts: []string{"numeric address"}},
		{url: "http://0177.0.0.1/h", wantParts: []string{`"0177.0.0.1"`, "numeric address"}},
		{url: "http://127.000.000.001/h", wantParts: []string{"numeric address"}},
		{url: "http://0x7f.0.0.1/h", wantParts: []string{"numeric address"}},
		{url: "http://127.0.0.1./h", wantParts: []string{"numeric address"}},
		{url: "http://93.184.216.034/h", wantParts: []string{"numeric address"}},
		{url: "http://hooks.example.com.0x7f/h", wantParts: []string{"numeric address"}},
		// Names are judged when they are dialled, whatever digits they hold.
		{url: "https://example.com/h"},
		{url: "https://example.com./h"},
		{url: "https://1password.example.com/h"},
		{url: "https://0x7f000001.example.com/h"},
		{url: "https://hooks-2130706433.example/h"},
		{url: "https://8.8.8.8/h"},
		{url: "https://[2001:4860:4860::8888]/h"},
	} {
		err := CheckURL(tc.url, false)
		if len(tc.wantParts) == 0 {
			require.NoError(t, err, tc.url)
			continue
		}
		require.Error(t, err, "%s must be refused", tc.url)
		for _, part := range tc.wantParts {
			require.Contains(t, err.Error(), part, tc.url)
		}
		var refused *RefusedError
		require.Equal(t, tc.refused, errors.As(err, &refused), "%s: refused address or malformed URL? got %v", tc.url, err)
		require.Equal(t, !tc.refused, errors.Is(err, ErrInvalidURL), tc.url)
		require.True(t, IsPermanent(err), "%s: a bad URL cannot get better by retrying", tc.url)
	}
}

func TestCheckURL_AllowPrivateAcceptsPrivateAddressesButNotMalformedURLs(t *testing.T) {
	for _, u := range []string{"http://localhost:8000/h", "http://127.0.0.1/h", "http://10.0.0.1/h", "http://[::1]/h", "http://100.64.0.1/h"} {
		require.NoError(t, CheckURL(u, true), u)
	}
	require.ErrorIs(t, CheckURL("ftp://127.0.0.1/h", true), ErrInvalidURL)
	require.ErrorIs(t, CheckURL("http://u:p@127.0.0.1/h", true), ErrInvalidURL)
	// A numeric form is ambiguous whatever is allowed: the address it means depends on who reads it.
	for _, u := range []string{"http://0x7f000001/h", "http://2130706433/h", "http://127.1/h", "http://017700000001/h", "http://0177.0.0.1/h"} {
		require.ErrorIs(t, CheckURL(u, true), ErrInvalidURL, u)
	}
}

func TestRefusedReason_RefusesEveryNonPublicRangeAndEmbeddedForm(t *testing.T) {
	for _, tc := range []struct {
		addr   string
		reason string // a part of the reason; empty means the address may be reached
	}{
		{"93.184.216.34", ""},
		{"8.8.8.8", ""},
		{"1.1.1.1", ""},
		{"100.128.0.1", ""},
		{"198.20.0.1", ""},
		{"2606:2800:220:1:248:1893:25c8:1946", ""},
		{"2001:4860:4860::8888", ""},
		{"2a00:1450:4001:82a::200e", ""},
		{"::ffff:93.184.216.34", ""},
		{"64:ff9b::5db8:d822", ""},
		{"2002:5db8:d822::1", ""},

		{"0.0.0.0", "unspecified"},
		{"0.255.255.255", "unspecified"},
		{"::", "unspecified"},
		{"127.0.0.1", "loopback"},
		{"127.255.255.254", "loopback"},
		{"::1", "loopback"},
		{"10.0.0.1", "private"},
		{"172.31.255.255", "private"},
		{"192.168.0.1", "private"},
		{"fc00::1", "private"},
		{"fdff:ffff::1", "private"},
		{"169.254.169.254", "link-local"},
		{"fe80::1", "link-local"},
		{"fe80::1%eth0", "link-local"},
		{"fec0::1", "site-local"},
		{"feff::1", "site-local"},
		{"224.0.0.1", "link-local multicast"},
		{"239.255.255.250", "multicast"},
		{"ff0e::1", "multicast"},
		{"255.255.255.255", "broadcast"},
		{"100.64.0.1", "100.64.0.0/10"},
		{"100.127.255.255", "100.64.0.0/10"},
		{"192.0.2.10", "documentation"},
		{"198.51.100.10", "documentation"},
		{"203.0.113.10", "documentation"},
		{"2001:db8::1", "documentation"},
		{"3fff::1", "documentation"},
		{"198.18.0.1", "benchmarking"},
		{"2001:2::1", "benchmarking"},
		{"240.0.0.1", "reserved"},
		{"192.0.0.1", "reserved"},
		{"192.88.99.1", "reserved"},
		{"2001:10::1", "reserved"},
		{"100::1", "reserved"},
		{"4000::1", "reserved"},

		// IPv4-mapped and IPv4-compatible.
		{"::ffff:127.0.0.1", "loopback"},
		{"::ffff:7f00:1", "IPv4-mapped IPv6 embedding 127.0.0.1"},
		{"::ffff:10.0.0.1", "private"},
		{"::ffff:169.254.169.254", "link-local"},
		{"::7f00:1", "loopback (IPv4-compatible IPv6 embedding 127.0.0.1)"},
		{"::127.0.0.1", "loopback"},
		{"::a00:1", "private"},
		{"::0.0.0.2", "unspecified"},
		// NAT64: the well-known prefix embeds the IPv4 address in its last 32 bits; the
		// local-use prefix places it by the network's own prefix length, so it is refused.
		{"64:ff9b::7f00:1", "loopback (NAT64 IPv6 embedding 127.0.0.1)"},
		{"64:ff9b::10.0.0.1", "private"},
		{"64:ff9b::a9fe:a9fe", "link-local"},
		{"64:ff9b:1::5db8:d822", "NAT64 local-use"},
		{"64:ff9b:1:ffff::1", "NAT64 local-use"},
		// 6to4 embeds the IPv4 address in bits 16-47.
		{"2002:7f00:1::", "loopback (6to4 IPv6 embedding 127.0.0.1)"},
		{"2002:7f00:1::1", "loopback"},
		{"2002:c0a8:101::1", "private (6to4 IPv6 embedding 192.168.1.1)"},
		{"2002:a9fe:a9fe::", "link-local"},
		{"2002::", "unspecified"},
		// Teredo obscures its client's address: the whole prefix is refused.
		{"2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"2001::", "Teredo"},
		{"2001:0:ffff:ffff:ffff:ffff:ffff:ffff", "Teredo"},
	} {
		got := RefusedReason(netip.MustParseAddr(tc.addr))
		if tc.reason == "" {
			assert.Empty(t, got, "%s must be reachable", tc.addr)
			continue
		}
		assert.Contains(t, got, tc.reason, tc.addr)
	}
}

// receiver is an HTTP server that records what it was sent.
type receiver struct {
	url    string
	hits   atomic.Int32
	header chan http.Header
	body   chan []byte
}

func newReceiver(t *testing.T, answer http.HandlerFunc) *receiver {
	t.Helper()
	r := &receiver{header: make(chan http.Header, 8), body: make(chan []byte, 8)}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		r.hits.Add(1)
		b, _ := io.ReadAll(req.Body)
		h := req.Header.Clone()
		h.Set("X-Test-Method", req.Method)
		r.header <- h
		r.body <- b
		answer(w, req)
	}))
	t.Cleanup(srv.Close)
	r.url = srv.URL
	return r
}

func TestSend_PostsTheSignedBodyWithEveryHeader(t *testing.T) {
	rcv := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) { w.WriteHeader(http.StatusNoContent) })
	body, err := json.Marshal(Payload{RequestID: "r1", ModelID: "m1", DeploymentID: "d1", Type: TypeAsyncRequestCompleted,
		Time: time.Now(), Data: DataJSON([]byte(`{"y":2}`), "application/json")})
	require.NoError(t, err)

	s := NewSender(true, 5*time.Second)
	require.NoError(t, s.Send(context.Background(), Delivery{URL: rcv.url + "/hook?x=1", Secret: testSecret, DeliveryID: "dlv_1", Body: body}))

	h, got := <-rcv.header, <-rcv.body
	require.Equal(t, http.MethodPost, h.Get("X-Test-Method"))
	require.Equal(t, body, got)
	require.Equal(t, "application/json", h.Get("Content-Type"))
	require.Equal(t, UserAgent, h.Get("User-Agent"))
	require.Equal(t, "dlv_1", h.Get(HeaderDeliveryID))
	ts, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	require.NoError(t, err, "timestamp header must be unix seconds")
	require.InDelta(t, time.Now().Unix(), ts, 5, "a delivery without At is signed now")
	// A receiver checks it with nothing but the secret.
	require.Equal(t, "v1="+receiverSignature(testSecret, h.Get(HeaderTimestamp), got), h.Get(HeaderSignature))
	require.NoError(t, Verify(testSecret, h, got, time.Now(), 5*time.Minute))
}

func TestSend_SignsAtTheGivenTime(t *testing.T) {
	rcv := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {})
	at := time.Unix(1700000123, 0)
	require.NoError(t, NewSender(true, 0).Send(context.Background(), Delivery{URL: rcv.url, Secret: testSecret, Body: []byte(`{}`), At: at}))
	h := <-rcv.header
	require.Equal(t, "1700000123", h.Get(HeaderTimestamp))
	require.Empty(t, h.Values(HeaderDeliveryID), "no delivery ID, no header")
}

func TestSend_LoopbackIsRefusedPermanentlyWithoutPrivate(t *testing.T) {
	rcv := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {})
	require.True(t, strings.HasPrefix(rcv.url, "http://127.0.0.1:"), rcv.url)
	err := NewSender(false, time.Second).Send(context.Background(), Delivery{URL: rcv.url, Secret: testSecret, Body: []byte(`{}`)})
	var refused *RefusedError
	require.ErrorAs(t, err, &refused)
	require.Equal(t, "loopback", refused.Reason)
	require.True(t, IsPermanent(err))
	require.Contains(t, err.Error(), "MODELPLANE_WEBHOOK_ALLOW_PRIVATE")
	require.Zero(t, rcv.hits.Load(), "the receiver must not be reached")
}

func TestSend_NameThatResolvesToLoopbackIsRefusedAtDial(t *testing.T) {
	rcv := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {})
	_, port, err := net.SplitHostPort(strings.TrimPrefix(rcv.url, "http://"))
	require.NoError(t, err)
	// post skips the URL check, as a name that resolves to a private address passes it:
	// the dialer alone must refuse the address it resolves to.
	err = NewSender(false, time.Second).post(context.Background(), Delivery{URL: "http://localhost:" + port + "/h", Secret: testSecret, Body: []byte(`{}`)})
	var refused *RefusedError
	require.ErrorAs(t, err, &refused, "got %v", err)
	require.Contains(t, []string{"127.0.0.1", "::1"}, refused.Host)
	require.Equal(t, "loopback", refused.Reason)
	require.True(t, IsPermanent(err))
	require.Zero(t, rcv.hits.Load(), "the receiver must not be reached")

	// The same send with private addresses allowed arrives.
	require.NoError(t, NewSender(true, time.Second).post(context.Background(), Delivery{URL: "http://localhost:" + port + "/h", Secret: testSecret, Body: []byte(`{}`)}))
	require.EqualValues(t, 1, rcv.hits.Load())
}

// fakeResolver answers every name with the same addresses.
type fakeResolver struct {
	addrs   []netip.Addr
	lookups atomic.Int32
}

func (r *fakeResolver) LookupNetIP(_ context.Context, _, _ string) ([]netip.Addr, error) {
	r.lookups.Add(1)
	return r.addrs, nil
}

func TestSend_EveryResolvedAddressIsCheckedAtDial(t *testing.T) {
	rcv := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {})
	_, port, err := net.SplitHostPort(strings.TrimPrefix(rcv.url, "http://"))
	require.NoError(t, err)
	url := "http://hooks.example.com:" + port + "/h"
	for _, tc := range []struct {
		name     string
		resolved []string
		host     string // the refused address
		reason   string
	}{
		{"loopback", []string{"127.0.0.1"}, "127.0.0.1", "loopback"},
		{"IPv4-mapped private", []string{"::ffff:10.0.0.1"}, "10.0.0.1", "private"},
		{"NAT64 of loopback", []string{"64:ff9b::7f00:1"}, "64:ff9b::7f00:1", "NAT64 IPv6 embedding 127.0.0.1"},
		{"IPv4-compatible loopback", []string{"::7f00:1"}, "::7f00:1", "loopback"},
		{"6to4 of loopback", []string{"2002:7f00:1::"}, "2002:7f00:1::", "6to4 IPv6 embedding 127.0.0.1"},
		{"Teredo", []string{"2001:0:4136:e378:8000:63bf:3fff:fdd2"}, "2001:0:4136:e378:8000:63bf:3fff:fdd2", "Teredo"},
		{"metadata after a public address", []string{"93.184.216.34", "169.254.169.254"}, "169.254.169.254", "link-local"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := &fakeResolver{}
			for _, a := range tc.resolved {
				res.addrs = append(res.addrs, netip.MustParseAddr(a))
			}
			s := NewSender(false, time.Second)
			s.resolver = res
			err := s.Send(context.Background(), Delivery{URL: url, Secret: testSecret, Body: []byte(`{}`)})
			var refused *RefusedError
			require.ErrorAs(t, err, &refused, "got %v", err)
			assert.Equal(t, tc.host, refused.Host)
			assert.Equal(t, "hooks.example.com", refused.Name)
			assert.Contains(t, refused.Reason, tc.reason)
			assert.Contains(t, err.Error(), "resolved from hooks.example.com")
			assert.True(t, IsPermanent(err), "a refused address cannot get better by retrying")
			assert.EqualValues(t, 1, res.lookups.Load(), "the name is resolved by the sender's resolver")
			assert.Zero(t, rcv.hits.Load(), "the receiver must not be reached")
		})
	}

	// With private addresses allowed the same name reaches the receiver it resolves to.
	s := NewSender(true, time.Second)
	s.resolver = &fakeResolver{addrs: []netip.Addr{netip.MustParseAddr("::ffff:127.0.0.1")}}
	require.NoError(t, s.Send(context.Background(), Delivery{URL: url, Secret: testSecret, Body: []byte(`{}`)}))
	require.EqualValues(t, 1, rcv.hits.Load())
}

func TestSend_RedirectIsAFailureAndIsNotFollowed(t *testing.T) {
	target := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {})
	rcv := newReceiver(t, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.url+"/elsewhere", http.StatusTemporaryRedirect)
	})
	err := NewSender(true, time.Second).Send(context.Background(), Delivery{URL: rcv.url, Secret: testSecret, Body: []byte(`{}`)})
	require.Error(t, err)
	require.Contains(t, err.Error(), "307")
	require.Contains(t, err.Error(), "redirects are not followed")
	require.False(t, IsPermanent(err))
	require.Zero(t, target.hits.Load(), "the redirect must not be followed")
}

func TestSend_StatusOtherThan2xxIsARetryableErrorWithTheStatus(t *testing.T) {
	for _, status := range []int{http.StatusBadRequest, http.StatusUnauthorized, http.StatusInternalServerError, http.StatusServiceUnavailable} {
		rcv := newReceiver(t, func(w http.ResponseWriter, _ *http.Request) {
			w.WriteHeader(status)
			_, _ = io.WriteString(w, "receiver says no\nsecond line")
		})
		err := NewSender(true, time.Second).Send(context.Background(), Delivery{URL: rcv.url + "/h?token=secret", Secret: testSecret, Body: []byte(`{}`)})
		require.Error(t, err, "status %d", status)
		assert.Contains(t, err.Error(), strconv.Itoa(status))
		assert.Contains(t, err.Error(), "receiver says no")
		assert.NotContains(t, err.Error(), "second line")
		assert.NotContains(t, err.Error(), "token=secret", "the query may hold a credential")
		assert.False(t, IsPermanent(err), "status %d may pass on a later try", status)
	}
}

func TestSend_NoAnswerIsRetryable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	err = NewSender(true, time.Second).Send(context.Background(), Delivery{URL: "http://" + addr + "/h?token=secret", Secret: testSecret, Body: []byte(`{}`)})
	require.Error(t, err)
	require.Contains(t, err.Error(), "http://"+addr+"/h")
	require.NotContains(t, err.Error(), "token=secret", "the query may hold a credential")
	require.False(t, IsPermanent(err), "a receiver that is down may come back: %v", err)
}

func TestDataJSON_KeepsJSONAndQuotesTheRest(t *testing.T) {
	for _, tc := range []struct {
		name, output, contentType, want string
	}{
		{"JSON object", `{"a": [1, 2]}`, "application/json", `{"a": [1, 2]}`},
		{"JSON with charset", `[1]`, "application/json; charset=utf-8", `[1]`},
		{"+json type", `{"a":1}`, "application/problem+json", `{"a":1}`},
		{"no content type, JSON", `42`, "", `42`},
		{"no content type, text", `hello`, "", `"hello"`},
		{"JSON type but not JSON", `{"a":`, "application/json", `"{\"a\":"`},
		{"text that parses as JSON stays text", `42`, "text/plain", `"42"`},
		{"event stream", "data: a\n\ndata: b\n\n", "text/event-stream", `"data: a\n\ndata: b\n\n"`},
		{"empty", ``, "application/json", `null`},
		{"whitespace only", " \n", "", `null`},
	} {
		got := DataJSON([]byte(tc.output), tc.contentType)
		require.True(t, json.Valid(got), "%s: %s is not JSON", tc.name, got)
		require.Equal(t, tc.want, string(got), tc.name)
	}
}

func TestPayload_EncodesEveryFieldWithNullDataAndEmptyErrors(t *testing.T) {
	at := time.Date(2025, 3, 4, 5, 6, 7, 0, time.FixedZone("x", 3600))
	b, err := json.Marshal(Payload{RequestID: "r1", ModelID: "m1", DeploymentID: "d1", Type: TypeAsyncRequestCompleted, Time: at})
	require.NoError(t, err)
	require.JSONEq(t, `{"request_id":"r1","model_id":"m1","deployment_id":"d1","type":"async_request_completed",
		"time":"2025-03-04T04:06:07Z","data":null,"errors":[]}`, string(b))

	b, err = json.Marshal(Payload{RequestID: "r1", Type: TypeAsyncRequestCompleted, Time: at, Data: DataJSON([]byte("oops"), "text/plain"),
		Errors: []ErrorEntry{{Code: "MODEL_PREDICT_ERROR", Message: "500 from the model", Attempt: 3}}})
	require.NoError(t, err)
	var back map[string]any
	require.NoError(t, json.Unmarshal(b, &back))
	require.Equal(t, "oops", back["data"])
	require.Equal(t, []any{map[string]any{"code": "MODEL_PREDICT_ERROR", "message": "500 from the model", "attempt": float64(3)}}, back["errors"])
}
