package e2e

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
)

// TestReadyz reads what a daemon's health port says: flanneld releases without /readyz
// answer 404, which leaves the decision to subnet.env, as no health server does.
func TestReadyz(t *testing.T) {
	tests := []struct {
		name   string
		status int
		want   readiness
	}{
		{"ready", http.StatusOK, ready},
		{"not ready", http.StatusServiceUnavailable, notReady},
		{"no /readyz", http.StatusNotFound, noHealth},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter,
				r *http.Request) {
				if r.URL.Path != "/readyz" {
					t.Errorf("asked for %s", r.URL.Path)
				}
				w.WriteHeader(tt.status)
			}))
			defer srv.Close()
			port := srv.Listener.Addr().(*net.TCPAddr).Port
			got := readyz(context.Background(), srv.Client(), &HostState{HealthPort: port})
			if got != tt.want {
				t.Errorf("readyz = %d, want %d", got, tt.want)
			}
		})
	}

	// Nothing listening on the port is no health server either.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	got := readyz(context.Background(), http.DefaultClient, &HostState{HealthPort: port})
	if got != noHealth {
		t.Errorf("readyz with nothing listening = %d, want noHealth", got)
	}
}
