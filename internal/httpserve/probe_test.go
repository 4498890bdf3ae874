package httpserve

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestProbe_SucceedsOn2xxAndSaysWhatOtherAnswersWere(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/readyz" {
			_, _ = w.Write([]byte(`{"status":"ready"}`))
			return
		}
		http.Error(w, `{"status":"not ready"}`, http.StatusServiceUnavailable)
	}))
	defer srv.Close()
	if err := Probe(context.Background(), srv.URL+"/readyz"); err != nil {
		t.Fatalf("a 200: want no error, got %v", err)
	}
	err := Probe(context.Background(), srv.URL+"/down")
	if err == nil || !strings.Contains(err.Error(), "503") || !strings.Contains(err.Error(), "not ready") {
		t.Fatalf("a 503: want an error naming the status and the body, got %v", err)
	}
	srv.Close()
	if err := Probe(context.Background(), srv.URL+"/readyz"); err == nil {
		t.Fatal("a closed server: want an error, got none")
	}
}
