package overlay

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestHealthHandler(t *testing.T) {
	tests := []struct {
		name       string
		ready      bool
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{name: "healthz before ready", method: "GET", path: "/healthz",
			wantStatus: 200, wantBody: "flanneld is running"},
		{name: "healthz when ready", ready: true, method: "GET", path: "/healthz",
			wantStatus: 200, wantBody: "flanneld is running"},
		{name: "readyz before ready", method: "GET", path: "/readyz",
			wantStatus: 503, wantBody: "flanneld is not ready yet"},
		{name: "readyz when ready", ready: true, method: "GET", path: "/readyz",
			wantStatus: 200, wantBody: "flanneld is ready"},
		{name: "head readyz", ready: true, method: "HEAD", path: "/readyz", wantStatus: 200},
		{name: "post healthz", method: "POST", path: "/healthz", wantStatus: 405},
		{name: "status", method: "GET", path: "/status", wantStatus: 200},
		{name: "unknown path", method: "GET", path: "/debug/requests", wantStatus: 404},
		{name: "healthz subpath", method: "GET", path: "/healthz/x", wantStatus: 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var h Health
			h.SetReady(tt.ready)
			rec := httptest.NewRecorder()
			h.Handler().ServeHTTP(rec, httptest.NewRequest(tt.method, tt.path, nil))
			if rec.Code != tt.wantStatus {
				t.Errorf("status = %d, want %d", rec.Code, tt.wantStatus)
			}
			if tt.wantBody != "" && rec.Body.String() != tt.wantBody {
				t.Errorf("body = %q, want %q", rec.Body.String(), tt.wantBody)
			}
		})
	}
}

func TestHealthServer(t *testing.T) {
	var h Health
	s, err := listenHealth("127.0.0.1:0", &h, discard())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.serve(ctx) }()

	url := "http://" + s.Addr().String() + "/readyz"
	get := func() (int, string) {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get(); code != 503 || body != "flanneld is not ready yet" {
		t.Errorf("readyz before ready = %d %q", code, body)
	}
	h.SetReady(true)
	if code, body := get(); code != 200 || body != "flanneld is ready" {
		t.Errorf("readyz when ready = %d %q", code, body)
	}

	t.Run("address in use", func(t *testing.T) {
		_, err := listenHealth(s.Addr().String(), &h, discard())
		if err == nil || !strings.Contains(err.Error(), s.Addr().String()) {
			t.Errorf("listening twice on %s: err = %v, want one naming the address",
				s.Addr(), err)
		}
	})

	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("serve: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("serve did not return after cancel")
	}
	if c, err := net.Dial("tcp", s.Addr().String()); err == nil {
		c.Close()
		t.Error("health server still accepts connections after shutdown")
	}
}
