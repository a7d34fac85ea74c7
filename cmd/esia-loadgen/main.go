// Command esia-loadgen drives complete brokered logins (and refresh, client-credentials and
// userinfo calls) against a running broker and reports throughput, latency, errors, the broker
// process's CPU and memory, and PostgreSQL transactions per operation. `make bench` runs it.
package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/base64"
	"encoding/csv"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	_ "github.com/lib/pq"
	"golang.org/x/oauth2"

	"github.com/esia-broker/esia-broker/esia/esiatest"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: esia-loadgen region|emulator|run [flags]")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "region":
		err = region(os.Args[2:])
	case "emulator":
		err = emulator(context.Background(), os.Args[2:])
	case "run":
		err = run(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "esia-loadgen:", err)
		os.Exit(1)
	}
}

// region writes a synthetic region: schools.csv (id,name) and a roster CSV whose guardians are
// the emulator's generated population, so that every random ESIA login auto-links by SNILS.
func region(args []string) error {
	fs := flag.NewFlagSet("region", flag.ExitOnError)
	schools := fs.Int("schools", 200, "schools")
	students := fs.Int("students", 50000, "students")
	population := fs.Int("population", 50000, "size of the emulator's random population (guardians)")
	dir := fs.String("out", ".", "folder for schools.csv and roster.csv")
	_ = fs.Parse(args)
	sf, err := os.Create(*dir + "/schools.csv")
	if err != nil {
		return err
	}
	defer sf.Close()
	sw := csv.NewWriter(sf)
	for i := range *schools {
		_ = sw.Write([]string{fmt.Sprintf("sch-%03d", i), fmt.Sprintf("Школа № %d", i+1)})
	}
	sw.Flush()
	rf, err := os.Create(*dir + "/roster.csv")
	if err != nil {
		return err
	}
	defer rf.Close()
	bw := bufio.NewWriter(rf)
	w := csv.NewWriter(bw)
	_ = w.Write([]string{"student_id", "school_id", "class", "family_name", "given_name", "middle_name", "birthdate", "snils", "active", "guardian1_snils", "guardian1_name"})
	for i := range *students {
		g := esiatest.PopulationPersona(i % *population)
		_ = w.Write([]string{fmt.Sprintf("st-%06d", i), fmt.Sprintf("sch-%03d", i%*schools), fmt.Sprintf("%d%c", 1+i%11, 'А'+rune(i%3)),
			g.LastName, "Ученик", "", fmt.Sprintf("%d-%02d-%02d", 2010+i%8, 1+i%12, 1+i%28), "", "1", g.SNILS, g.LastName + " " + g.FirstName})
	}
	w.Flush()
	return bw.Flush()
}

type result struct {
	mu        sync.Mutex
	latencies []time.Duration
	errors    map[string]int
}

func (r *result) add(d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if err != nil {
		k := err.Error()
		if len(k) > 80 {
			k = k[:80]
		}
		r.errors[k]++
		return
	}
	r.latencies = append(r.latencies, d)
}

type proc struct{ pid int }

// cpu returns the process's user+system CPU time.
func (p proc) cpu() time.Duration {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.pid))
	if err != nil {
		return 0
	}
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseInt(fields[11], 10, 64)
	st, _ := strconv.ParseInt(fields[12], 10, 64)
	return time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// peakRSS returns VmHWM in MiB.
func (p proc) peakRSS() float64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", p.pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmHWM:") {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}

func pgXacts(db *sql.DB) int64 {
	if db == nil {
		return 0
	}
	var n int64
	_ = db.QueryRow(`SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()`).Scan(&n)
	return n
}

type runner struct {
	issuer, clientID, secret, redirect string
	provider                           *oidc.Provider
	verifier                           *oidc.IDTokenVerifier
	conf                               oauth2.Config
	consentPages                       atomic.Int64 // consent forms answered: 0 for returning users
	// transport keeps a connection per virtual user, as each user's browser would (the default
	// pool keeps two per host and would reconnect for most requests).
	transport *http.Transport
}

var (
	csrfRe  = regexp.MustCompile(`name="csrf" value="([^"]+)"`)
	loginRe = regexp.MustCompile(`name="login" value="([^"]+)"`)
)

func random(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// login runs one complete brokered login as a browser would, and returns the tokens.
func (r *runner) login(ctx context.Context) (*oauth2.Token, error) {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Transport: r.transport, Timeout: 30 * time.Second, CheckRedirect: func(req *http.Request, _ []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), r.redirect) {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	verifier, nonce, state := oauth2.GenerateVerifier(), random(12), random(12)
	// A new browser (cookie jar) for every login: no broker session, so the login goes to ESIA
	// without prompt=login (which now first ends ESIA's own session: another round trip that
	// diaries ask for only when they need a fresh login).
	u := r.conf.AuthCodeURL(state, oauth2.S256ChallengeOption(verifier), oidc.Nonce(nonce), oauth2.SetAuthURLParam("idp", "esia"))
	resp, err := c.Get(u)
	if err != nil {
		return nil, fmt.Errorf("authorize: %w", err)
	}
	for range 3 {
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusFound || resp.StatusCode == http.StatusSeeOther {
			break
		}
		cs, ls := csrfRe.FindSubmatch(body), loginRe.FindSubmatch(body)
		if resp.StatusCode != 200 || cs == nil || ls == nil || !strings.Contains(string(body), `action="/consent"`) {
			return nil, fmt.Errorf("unexpected page %d", resp.StatusCode)
		}
		r.consentPages.Add(1)
		resp, err = c.PostForm(r.issuer+"/consent", url.Values{"csrf": {string(cs[1])}, "login": {string(ls[1])}, "decision": {"accept"}})
		if err != nil {
			return nil, fmt.Errorf("consent: %w", err)
		}
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil || loc.Query().Get("code") == "" || loc.Query().Get("state") != state {
		return nil, fmt.Errorf("no code in %q", resp.Header.Get("Location"))
	}
	tok, err := r.conf.Exchange(ctx, loc.Query().Get("code"), oauth2.VerifierOption(verifier))
	if err != nil {
		return nil, fmt.Errorf("exchange: %w", err)
	}
	raw, _ := tok.Extra("id_token").(string)
	idt, err := r.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, fmt.Errorf("id token: %w", err)
	}
	if idt.Nonce != nonce {
		return nil, fmt.Errorf("nonce")
	}
	return tok, nil
}

func run(args []string) error {
	fs := flag.NewFlagSet("run", flag.ExitOnError)
	issuer := fs.String("issuer", "http://127.0.0.1:18080", "broker issuer")
	clientID := fs.String("client-id", "bench", "client")
	secret := fs.String("client-secret", "", "client secret")
	redirect := fs.String("redirect-uri", "http://127.0.0.1:9/bench/callback", "the client's redirect URI (never contacted)")
	users := fs.Int("users", 8, "concurrent virtual users")
	duration := fs.Duration("duration", 20*time.Second, "how long each mode runs")
	modes := fs.String("modes", "login,login_rate,refresh,client_credentials,userinfo", "what to measure: login (closed loop, -users), login_rate (open loop at -rate), refresh, client_credentials, userinfo")
	pid := fs.Int("pid", 0, "broker process id (CPU and memory)")
	pgDSN := fs.String("pg", "", "PostgreSQL DSN of the broker's database (transactions)")
	jsonOut := fs.String("json", "", "also write the results as JSON to this file")
	rate := fs.Float64("rate", 100, "logins started per second in mode login_rate (open loop)")
	firstLogins := fs.Int("first-logins", 0, "before the timed modes, run exactly this many logins as mode first_login (with the emulator's -in-order-first: every population member logs in and consents once, so later logins are returning users)")
	_ = fs.Parse(args)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.MaxIdleConns, tr.MaxIdleConnsPerHost = 4*(*users)+16, 4*(*users)+16
	// oauth2 and go-oidc take their HTTP client from the context.
	ctx := oidc.ClientContext(context.Background(), &http.Client{Transport: tr, Timeout: 30 * time.Second})
	p, err := oidc.NewProvider(ctx, *issuer)
	if err != nil {
		return fmt.Errorf("discovery: %w", err)
	}
	r := &runner{issuer: *issuer, clientID: *clientID, secret: *secret, redirect: *redirect, provider: p, transport: tr,
		verifier: p.Verifier(&oidc.Config{ClientID: *clientID, SupportedSigningAlgs: []string{"RS256", "ES256"}}),
		conf:     oauth2.Config{ClientID: *clientID, ClientSecret: *secret, Endpoint: p.Endpoint(), RedirectURL: *redirect, Scopes: []string{oidc.ScopeOpenID, "profile", "students", oidc.ScopeOfflineAccess}}}
	var db *sql.DB
	if *pgDSN != "" {
		if db, err = sql.Open("postgres", *pgDSN); err != nil {
			return err
		}
		defer db.Close()
	}
	var report []map[string]any
	modeList := strings.Split(*modes, ",")
	if *firstLogins > 0 {
		modeList = append([]string{"first_login"}, modeList...)
	}
	var pool []*oauth2.Token
	for _, mode := range modeList {
		if mode != "first_login" && pool == nil {
			// A pool of tokens for the refresh and userinfo modes.
			for range *users {
				t, err := r.login(ctx)
				if err != nil {
					return fmt.Errorf("warm-up login: %w", err)
				}
				pool = append(pool, t)
			}
		}
		res := &result{errors: map[string]int{}}
		br := proc{*pid}
		cpu0, x0 := br.cpu(), pgXacts(db)
		consents0 := r.consentPages.Load()
		start := time.Now()
		deadline := start.Add(*duration)
		left := int64(*firstLogins)
		more := func() bool {
			if mode == "first_login" {
				return atomic.AddInt64(&left, -1) >= 0
			}
			return time.Now().Before(deadline)
		}
		var wg sync.WaitGroup
		switch mode {
		case "login_rate":
			// Open loop: a login starts every 1/rate whatever the answers, and its latency counts
			// from when it was due, so a slow broker cannot hide its queue (no coordinated omission).
			if *rate <= 0 {
				return fmt.Errorf("mode login_rate needs -rate")
			}
			interval := time.Duration(float64(time.Second) / *rate)
			inflight := make(chan struct{}, 512)
			for due := start; due.Before(deadline); due = due.Add(interval) {
				time.Sleep(time.Until(due))
				select {
				case inflight <- struct{}{}:
				default:
					res.add(0, fmt.Errorf("generator: 512 logins in flight, one skipped"))
					continue
				}
				wg.Add(1)
				go func(due time.Time) {
					defer wg.Done()
					defer func() { <-inflight }()
					_, err := r.login(ctx)
					res.add(time.Since(due), err)
				}(due)
			}
		default: // closed loop: -users workers, each starting its next call when the last ends
			for u := range *users {
				wg.Add(1)
				go func() {
					defer wg.Done()
					var tok *oauth2.Token
					if pool != nil {
						tok = pool[u]
						defer func() { pool[u] = tok }() // refresh rotates: later modes use the newest token
					}
					for more() {
						t0 := time.Now()
						var err error
						switch mode {
						case "login", "first_login":
							_, err = r.login(ctx)
						case "refresh":
							var nt *oauth2.Token
							nt, err = r.conf.TokenSource(ctx, &oauth2.Token{RefreshToken: tok.RefreshToken, Expiry: time.Now().Add(-time.Hour)}).Token()
							if err == nil {
								tok = nt
							}
						case "client_credentials":
							_, err = ccToken(ctx, r)
						case "userinfo":
							_, err = p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
						default:
							err = fmt.Errorf("unknown mode %s", mode)
						}
						res.add(time.Since(t0), err)
					}
				}()
			}
		}
		wg.Wait()
		elapsed := time.Since(start)
		time.Sleep(1500 * time.Millisecond) // PostgreSQL flushes its statistics about every second
		cpu1, x1 := br.cpu(), pgXacts(db)
		n := len(res.latencies)
		sort.Slice(res.latencies, func(i, j int) bool { return res.latencies[i] < res.latencies[j] })
		pct := func(q float64) float64 {
			if n == 0 {
				return 0
			}
			return float64(res.latencies[min(n-1, int(q*float64(n)))].Microseconds()) / 1000
		}
		row := map[string]any{"mode": mode, "users": *users, "ok": n, "per_second": float64(n) / elapsed.Seconds(),
			"p50_ms": pct(.50), "p90_ms": pct(.90), "p99_ms": pct(.99), "max_ms": pct(1), "errors": res.errors}
		if mode == "login_rate" {
			row["target_per_second"] = *rate
		}
		if strings.Contains(mode, "login") {
			row["consent_pages"] = r.consentPages.Load() - consents0
		}
		if *pid > 0 && n > 0 {
			row["broker_cpu_ms_per_op"] = float64((cpu1 - cpu0).Microseconds()) / 1000 / float64(n)
			row["broker_peak_rss_mib"] = br.peakRSS()
		}
		if db != nil && n > 0 {
			row["pg_xacts_per_op"] = float64(x1-x0) / float64(n)
		}
		report = append(report, row)
		fmt.Printf("%-18s %6d ok %8.1f/s  p50 %6.1f  p90 %6.1f  p99 %6.1f  max %7.1f ms", mode, n, row["per_second"], pct(.5), pct(.9), pct(.99), pct(1))
		if v, ok := row["broker_cpu_ms_per_op"]; ok {
			fmt.Printf("  cpu %.2f ms/op  rss %.0f MiB", v, row["broker_peak_rss_mib"])
		}
		if v, ok := row["pg_xacts_per_op"]; ok {
			fmt.Printf("  pg %.1f xact/op", v)
		}
		if v, ok := row["consent_pages"]; ok {
			fmt.Printf("  consents %d", v)
		}
		if len(res.errors) > 0 {
			fmt.Printf("  errors %v", res.errors)
		}
		fmt.Println()
	}
	if *jsonOut != "" {
		b, _ := json.MarshalIndent(report, "", "  ")
		return os.WriteFile(*jsonOut, b, 0o644)
	}
	return nil
}

func ccToken(ctx context.Context, r *runner) (string, error) {
	form := url.Values{"grant_type": {"client_credentials"}}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, r.provider.Endpoint().TokenURL, strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(r.clientID, r.secret)
	resp, err := (&http.Client{Transport: r.transport, Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var m map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&m); err != nil || resp.StatusCode != 200 {
		return "", fmt.Errorf("client credentials: %d", resp.StatusCode)
	}
	s, _ := m["access_token"].(string)
	return s, nil
}
