package broker_test

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/internal/testwait"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/upstream"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// roundRobin is a load balancer for the test: each request goes to the next replica.
type roundRobin struct {
	backends []*url.URL
	next     atomic.Int64
	mu       sync.Mutex
	hits     map[string]int
}

func (rr *roundRobin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	i := int(rr.next.Add(1)) % len(rr.backends)
	rr.mu.Lock()
	rr.hits[rr.backends[i].Host]++
	rr.mu.Unlock()
	p := httputil.NewSingleHostReverseProxy(rr.backends[i])
	p.ServeHTTP(w, r)
}

// TestTwoReplicasOnePostgres runs two brokers on one PostgreSQL behind a round-robin balancer:
// a login hops between them at every request and completes; a key rotated on one is published by
// the other; attempt limits count across both.
func TestTwoReplicasOnePostgres(t *testing.T) {
	dsn := storagetest.NewPostgresDSN(t)
	sA, sB := storagetest.Open(t, dsn), storagetest.Open(t, dsn)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	env := []string{"ESIA_BROKER_KEYS_RELOAD_INTERVAL=1s", "ESIA_BROKER_ACTIVATION_CLIENT_ID=mobile", "ESIA_BROKER_LIMITS_PAGES_PER_IP_PER_MINUTE=40"}
	conn := func(iss string) []upstream.Connector {
		return []upstream.Connector{&fakeConnector{issuer: iss, Subject: "1000299654"}}
	}
	a := newHarnessAt(t, sA, issuer, conn, env...)
	b := newHarnessAt(t, sB, issuer, conn, env...)
	ua, _ := url.Parse(a.Direct)
	ub, _ := url.Parse(b.Direct)
	rr := &roundRobin{backends: []*url.URL{ua, ub}, hits: map[string]int{}}
	lb := &httptest.Server{Listener: l, Config: &http.Server{Handler: rr}}
	lb.Start()
	t.Cleanup(lb.Close)
	front := &harness{t: t, URL: issuer, Store: sA}

	front.client("kiasuo", "secret-secret-secret")
	r := newRP(t, front, "kiasuo", "secret-secret-secret")
	tok, idt := r.loginAndExchange(t, newBrowser(t))
	if idt.Subject == "" || tok.RefreshToken == "" {
		t.Fatal("no login across replicas")
	}
	rr.mu.Lock()
	hitsA, hitsB := rr.hits[ua.Host], rr.hits[ub.Host]
	rr.mu.Unlock()
	if hitsA < 3 || hitsB < 3 {
		t.Errorf("the login did not hop between replicas: %d / %d requests", hitsA, hitsB)
	}
	// Refresh on whichever replica; the session and tokens are shared.
	expired := *tok
	expired.Expiry = time.Now().Add(-time.Minute)
	if _, err := r.conf.TokenSource(r.ctx, &expired).Token(); err != nil {
		t.Errorf("refresh across replicas: %v", err)
	}

	// A key rotated on A is published by B.
	kid, err := a.Broker.Keys().Rotate(context.Background(), "RS256")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, err := http.Get(b.Direct + "/oauth2/jwks")
		if err != nil {
			t.Fatal(err)
		}
		var set jose.JSONWebKeySet
		err = json.NewDecoder(resp.Body).Decode(&set)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("replica B's JWKS: %v", err)
		}
		if len(set.Key(kid)) == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("replica B does not publish key %s rotated on A", kid)
		}
		time.Sleep(200 * time.Millisecond)
	}
	// Both replicas now sign with the new key, and the balancer's JWKS verifies it whichever
	// replica answers the discovery and JWKS requests.
	// B picks up that the old key retired at its next reload: wait until two tokens in a row (one
	// from each replica behind the balancer) carry the new key, instead of sleeping for it.
	testwait.Until(t, 15*time.Second, "both replicas to sign with the rotated key", func() bool {
		for range 2 {
			hdr, err := jose.ParseSignedCompact(mustRawIDToken(t, r), []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
			if err != nil || hdr.Signatures[0].Header.KeyID != kid {
				return false
			}
		}
		return true
	})
	for range 2 {
		raw := mustRawIDToken(t, r)
		hdr, err := jose.ParseSignedCompact(raw, []jose.SignatureAlgorithm{jose.RS256, jose.ES256})
		if err != nil {
			t.Fatal(err)
		}
		if got := hdr.Signatures[0].Header.KeyID; got != kid {
			t.Errorf("an ID token after rotation is signed with %s, want %s", got, kid)
		}
		p, err := oidc.NewProvider(context.Background(), issuer)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := p.Verifier(&oidc.Config{ClientID: "kiasuo"}).Verify(context.Background(), raw); err != nil {
			t.Errorf("verify after rotation: %v", err)
		}
	}

	// Wrong activation keys alternate between replicas and still lock out after 10.
	mobile := front.client("mobile", "", "openid", "offline_access")
	mobile.GrantTypes = []string{provider.GrantTypeActivationKey, "refresh_token"}
	if err := sA.UpdateClient(context.Background(), mobile); err != nil {
		t.Fatal(err)
	}
	var last map[string]any
	for range 11 {
		_, last = postForm(t, issuer+"/oauth2/token", url.Values{"grant_type": {provider.GrantTypeActivationKey}, "activation_key": {"AAAA-BBBB-CCCC-DDDD"}, "client_id": {"mobile"}}, "", "")
	}
	if d, _ := last["error_description"].(string); !strings.Contains(d, "Too many") {
		t.Errorf("the 11th wrong key across replicas: %v", last)
	}

	// The per-IP page limit (40 a minute) is counted in the database: through the balancer the
	// 429 comes after at most 40 authorizations in all, not 40 per replica.
	served := 0
	for served < 100 {
		resp, err := http.Get(issuer + "/oauth2/authorize?client_id=kiasuo&response_type=code&scope=openid&state=state-12345678&redirect_uri=" + url.QueryEscape(rpRedirect))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		served++
	}
	if served >= 40 {
		t.Errorf("%d authorizations passed before a 429: the limit is not shared", served)
	}
}

func mustRawIDToken(t *testing.T, r *rp) string {
	t.Helper()
	tok, _ := r.loginAndExchange(t, newBrowser(t))
	raw, _ := tok.Extra("id_token").(string)
	return raw
}
