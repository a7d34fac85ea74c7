package backchannel

import (
	"net"
	"testing"
)

func TestLogoutTargetAllowed(t *testing.T) {
	for _, c := range []struct {
		ip            string
		allowLoopback bool
		ok            bool
	}{
		{"203.0.113.7", false, true},
		{"10.1.2.3", false, true}, // a region's own network: its diaries may live there
		{"127.0.0.1", false, false},
		{"127.0.0.1", true, true},
		{"::1", false, false},
		{"169.254.169.254", true, false}, // cloud metadata
		{"fe80::1", true, false},
		{"0.0.0.0", true, false},
		{"::", true, false},
		{"224.0.0.1", true, false},
		{"ff02::1", true, false},
	} {
		err := logoutTargetAllowed(net.ParseIP(c.ip), c.allowLoopback)
		if (err == nil) != c.ok {
			t.Errorf("%s (loopback allowed %v): %v, want ok=%v", c.ip, c.allowLoopback, err, c.ok)
		}
	}
	if logoutTargetAllowed(nil, true) == nil {
		t.Error("an unparsable address was allowed")
	}
}

// TestLogoutClientRefusesItsOwnHost: a broker served on a public name does not post a logout
// token to a loopback address, whatever the URI's host name resolves to.
func TestLogoutClientRefusesItsOwnHost(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	c := newLogoutClient("https://sso.region.example")
	resp, err := c.Post("http://localhost:"+portOf(l)+"/metrics", "application/x-www-form-urlencoded", nil)
	if err == nil {
		resp.Body.Close()
		t.Fatal("the logout client reached a loopback address")
	}
	// The host's own addresses that are not loopback: refused too.
	addrs, _ := net.InterfaceAddrs()
	for _, a := range addrs {
		n, ok := a.(*net.IPNet)
		if !ok || n.IP.IsLoopback() || n.IP.IsLinkLocalUnicast() || n.IP.To4() == nil {
			continue
		}
		own, err := net.Listen("tcp", net.JoinHostPort(n.IP.String(), "0"))
		if err != nil {
			continue
		}
		resp, err := c.Post("http://"+own.Addr().String()+"/", "application/x-www-form-urlencoded", nil)
		own.Close()
		if err == nil {
			resp.Body.Close()
			t.Errorf("the logout client reached the host's own address %s", n.IP)
		}
	}
}

func portOf(l net.Listener) string {
	_, p, _ := net.SplitHostPort(l.Addr().String())
	return p
}
