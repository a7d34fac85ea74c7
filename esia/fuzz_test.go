package esia

import (
	"encoding/base64"
	"strings"
	"testing"
	"time"
)

// FuzzVerifyAccessToken feeds arbitrary tokens to the JWT parsing and claim checks: they must
// fail cleanly, never panic, and accept nothing unsigned when a verifier is set.
func FuzzVerifyAccessToken(f *testing.F) {
	enc := base64.RawURLEncoding.EncodeToString
	f.Add(enc([]byte(`{"alg":"RS256"}`)) + "." + enc([]byte(`{"iss":"http://esia.gosuslugi.ru/","client_id":"X","exp":99999999999,"urn:esia:sbj_id":1}`)) + "." + enc([]byte("sig")))
	f.Add("a.b.c")
	f.Add("")
	f.Add(enc([]byte(`{"alg":"none"}`)) + "." + enc([]byte(`{}`)) + ".")
	f.Add(enc([]byte(`{"alg":"GOST3410_2012_256"}`)) + "." + enc([]byte(`{"exp":"1e400","nbf":[],"urn:esia:sbj_id":{}}`)) + "." + enc(make([]byte, 64)))
	c := &Client{cfg: Config{ClientID: "X", Issuer: DefaultIssuer, Leeway: time.Minute, Now: time.Now, Verifier: &TokenVerifier{}}}
	f.Fuzz(func(t *testing.T, tok string) {
		claims, err := c.VerifyAccessToken(tok)
		if err == nil {
			t.Fatalf("a token passed a verifier with no keys: %+v", claims)
		}
	})
}

func FuzzTimestampAndDates(f *testing.F) {
	f.Add("2026.11.22 14:00:00 +0300", "12.09.2013")
	f.Add("", "")
	f.Add("2026.13.40 25:61:61 +9999", "31.02.2013")
	f.Fuzz(func(t *testing.T, ts, birth string) {
		if tm, err := time.Parse(TimestampLayout, ts); err == nil {
			if back := tm.Format(TimestampLayout); back != ts && !strings.Contains(ts, "-0000") {
				if _, err := time.Parse(TimestampLayout, back); err != nil {
					t.Fatalf("formatted timestamp %q does not parse", back)
				}
			}
		}
		iso := ISOBirthDate(birth)
		if iso != "" {
			if _, err := time.Parse("2006-01-02", iso); err != nil {
				t.Fatalf("ISOBirthDate(%q) = %q", birth, iso)
			}
		}
		_ = NewError("invalid_request", birth, 400).Error()
	})
}
