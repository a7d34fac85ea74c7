package main

import (
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/esia/gost"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestHelperSigner is not a test: run as a child process (ESIA_TEST_SIGNER=1) it is a signer
// command that signs standard input with the key in ESIA_TEST_SIGNER_KEY and writes the raw
// signature, byte-reversed when ESIA_TEST_SIGNER_REVERSE=1 (as CryptoPro writes it).
func TestHelperSigner(t *testing.T) {
	if os.Getenv("ESIA_TEST_SIGNER") != "1" {
		return
	}
	msg, _ := io.ReadAll(os.Stdin)
	b, _ := os.ReadFile(os.Getenv("ESIA_TEST_SIGNER_KEY"))
	key, err := gost.ParsePrivateKeyPEM(b)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	sig, _ := key.SignMessage(rand.Reader, msg)
	if os.Getenv("ESIA_TEST_SIGNER_REVERSE") == "1" {
		sig = gost.ReverseBytes(sig)
	}
	os.Stdout.Write(sig)
	os.Exit(0)
}

type esiaFiles struct {
	dir, key, cert, otherKey, esiaCert, esiaCertDER, expiredESIA string
	certDER                                                      []byte
}

func writeESIAFiles(t *testing.T) esiaFiles {
	t.Helper()
	dir := t.TempDir()
	f := esiaFiles{dir: dir}
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	keyPEM := func(k *gost.PrivateKey) []byte {
		der, _ := gost.MarshalPKCS8PrivateKey(k)
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	key, cert, _ := esiatest.NewClientCredentials("ESIA_BROKER")
	other, _, _ := esiatest.NewClientCredentials("OTHER")
	f.certDER = cert
	f.key, f.otherKey = write("key.pem", keyPEM(key)), write("other-key.pem", keyPEM(other))
	f.cert = write("cert.cer", cert) // DER, as a CA hands it out
	esiaKey, esiaCert, _ := esiatest.NewClientCredentials("ESIA test certificate")
	f.esiaCert = write("esia.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: esiaCert}))
	f.esiaCertDER = write("esia.cer", esiaCert)
	expired, _ := gost.CreateSelfSignedCertificate(esiaKey, "ESIA old", time.Now().AddDate(-2, 0, 0), time.Now().AddDate(0, 0, -1))
	f.expiredESIA = write("esia-old.cer", expired)
	return f
}

func esiaEnv(t *testing.T, f esiaFiles, extra ...string) []string {
	t.Helper()
	return append(testEnv(storagetest.NewSQLiteDSN(t)), append([]string{
		"ESIA_BROKER_ISSUER=https://dnevnik.region.example",
		"ESIA_BROKER_UPSTREAM_ESIA_ENABLED=true", "ESIA_BROKER_UPSTREAM_ESIA_BASE_URL=test",
		"ESIA_BROKER_UPSTREAM_ESIA_CLIENT_ID=ESIA_BROKER", "ESIA_BROKER_UPSTREAM_ESIA_CERT_FILE=" + f.cert,
		"ESIA_BROKER_UPSTREAM_ESIA_KEY_FILE=" + f.key, "ESIA_BROKER_UPSTREAM_ESIA_VERIFY_CERT_FILES=" + f.esiaCertDER,
	}, extra...)...)
}

func TestESIACheck(t *testing.T) {
	f := writeESIAFiles(t)
	self, _ := os.Executable()
	command := func(reverse bool) []string {
		r := "0"
		if reverse {
			r = "1"
		}
		script := filepath.Join(t.TempDir(), "sign")
		os.WriteFile(script, []byte(fmt.Sprintf("#!/bin/sh\nESIA_TEST_SIGNER=1 ESIA_TEST_SIGNER_KEY=%q ESIA_TEST_SIGNER_REVERSE=%s exec %q -test.run='^TestHelperSigner$'\n", f.key, r, self)), 0o700)
		return []string{"ESIA_BROKER_UPSTREAM_ESIA_SIGNER=command", "ESIA_BROKER_UPSTREAM_ESIA_SIGNER_COMMAND=" + script}
	}
	for _, tc := range []struct {
		name  string
		env   []string
		ok    bool
		wants []string
	}{
		{"in order", nil, true, []string{
			"ok    the key in " + f.key + " belongs to the certificate",
			"client_certificate_hash): " + gost.CertificateHash(f.certDER),
			"tokens must carry iss " + esia.TestIssuer,
			"https://dnevnik.region.example/esia/callback and https://dnevnik.region.example/oauth2/logout/done",
			"sample /aas/oauth2/v2/ac request is signed and its client_secret verifies",
			"sample request: " + esia.TestURL + "/aas/oauth2/v2/ac?",
			"ok    ESIA certificate " + f.esiaCertDER + ": CN=ESIA test certificate",
			"everything checked is in order"}},
		{"key of another certificate", []string{"ESIA_BROKER_UPSTREAM_ESIA_KEY_FILE=" + f.otherKey}, false, []string{
			"FAIL  the key in " + f.otherKey + " does not belong to the certificate", "ESIA-007053"}},
		{"expired ESIA certificate", []string{"ESIA_BROKER_UPSTREAM_ESIA_VERIFY_CERT_FILES=" + f.esiaCert + "," + f.expiredESIA}, false, []string{
			"ok    ESIA certificate " + f.esiaCert, "FAIL  ESIA's certificate " + f.expiredESIA + " expired on"}},
		{"command signer, byte order right", append(command(true), "ESIA_BROKER_UPSTREAM_ESIA_SIGNER_REVERSE=true"), true, []string{
			"ok    the signer command signs with the certificate's key (signer_reverse: true)"}},
		{"the system's own certificate given as ESIA's", []string{"ESIA_BROKER_UPSTREAM_ESIA_VERIFY_CERT_FILES=" + f.cert}, false, []string{
			"FAIL  " + f.cert + " is the system's own certificate (cert_file), not ESIA's"}},
		{"command signer, byte order wrong", command(true), false, []string{
			"FAIL  the signer command's signature verifies only byte-reversed: set upstream.esia.signer_reverse: true"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, err := run(t, esiaEnv(t, f, tc.env...), "esia", "check")
			var ee *exitError
			if tc.ok != (err == nil) || (!tc.ok && (!errors.As(err, &ee) || ee.code != 1)) {
				t.Errorf("error %v, want ok=%v (exit 1 on problems)\n%s", err, tc.ok, out)
			}
			for _, w := range tc.wants {
				if !strings.Contains(out, w) {
					t.Errorf("output lacks %q:\n%s", w, out)
				}
			}
		})
	}
	t.Run("online against an ESIA that has another certificate registered", func(t *testing.T) {
		for _, tc := range []struct {
			registered []byte
			want       string
		}{
			{f.certDER, "ok    online: ESIA took the signed request"},
			{otherCert(t), "FAIL  online: ESIA refused the request with ESIA-007053"},
		} {
			emu, err := esiatest.New(esiatest.Options{Clients: []esiatest.Client{{ID: "ESIA_BROKER", CertDER: tc.registered,
				RedirectURIs: []string{"https://dnevnik.region.example/esia/callback"}, Scopes: []string{"openid", "fullname", "birthdate", "gender", "snils"}}}})
			if err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(emu.Handler())
			out, _ := run(t, esiaEnv(t, f, "ESIA_BROKER_UPSTREAM_ESIA_BASE_URL="+srv.URL), "esia", "check", "--online")
			srv.Close()
			if !strings.Contains(out, tc.want) {
				t.Errorf("output lacks %q:\n%s", tc.want, out)
			}
		}
	})
	if _, err := run(t, testEnv(storagetest.NewSQLiteDSN(t)), "esia", "check"); err == nil || !strings.Contains(err.Error(), "upstream.esia.enabled is false") {
		t.Errorf("check without ESIA: %v", err)
	}
}

func otherCert(t *testing.T) []byte {
	t.Helper()
	_, c, err := esiatest.NewClientCredentials("OTHER")
	if err != nil {
		t.Fatal(err)
	}
	return c
}
