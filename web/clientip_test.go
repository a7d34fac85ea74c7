package web

import (
	"net/http/httptest"
	"testing"

	"github.com/esia-broker/esia-broker/config"
)

func TestClientIP(t *testing.T) {
	nets, err := config.HTTP{TrustedProxies: "10.0.0.0/8, 127.0.0.1"}.TrustedProxyNets()
	if err != nil {
		t.Fatal(err)
	}
	k := &Kit{proxies: nets}
	tests := []struct {
		name, remote, xff, want string
	}{
		{"direct client", "203.0.113.5:4000", "", "203.0.113.5"},
		{"direct client spoofing the header", "203.0.113.5:4000", "198.51.100.7", "203.0.113.5"},
		{"behind the balancer", "127.0.0.1:4000", "198.51.100.7", "198.51.100.7"},
		{"two trusted hops", "127.0.0.1:4000", "198.51.100.7, 10.1.1.1", "198.51.100.7"},
		{"client-supplied prefix is ignored", "127.0.0.1:4000", "1.2.3.4, 198.51.100.7", "198.51.100.7"},
		{"garbage header", "127.0.0.1:4000", "<script>", "127.0.0.1"},
		{"no header", "10.2.3.4:4000", "", "10.2.3.4"},
	}
	for _, tc := range tests {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.remote
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := k.ClientIP(r); got != tc.want {
			t.Errorf("%s: %s, want %s", tc.name, got, tc.want)
		}
	}
	if _, err := (config.HTTP{TrustedProxies: "not-a-net"}).TrustedProxyNets(); err == nil {
		t.Error("a bad CIDR was accepted")
	}
}
