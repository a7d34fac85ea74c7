package connectors

import (
	"bytes"
	"context"
	"encoding/base64"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/gost"
)

// CheckESIA checks the direct ESIA connection as configured and prints one line per finding to
// w; it returns how many problems it found.
func CheckESIA(ctx context.Context, cfg *config.Config, online bool, w io.Writer) int {
	r := &checkReport{w: w}
	checkESIA(ctx, cfg, online, r)
	return r.failed
}

// checkReport prints one line per finding.
type checkReport struct {
	w      io.Writer
	failed int
}

func (r *checkReport) ok(format string, a ...any)   { r.line("ok  ", format, a...) }
func (r *checkReport) info(format string, a ...any) { r.line("    ", format, a...) }
func (r *checkReport) warn(format string, a ...any) { r.line("warn", format, a...) }
func (r *checkReport) fail(format string, a ...any) {
	r.failed++
	r.line("FAIL", format, a...)
}
func (r *checkReport) line(tag, format string, a ...any) {
	fmt.Fprintf(r.w, "%s  %s\n", tag, fmt.Sprintf(format, a...))
}

// validity reports a certificate's dates; it fails an expired or not yet valid one.
func (r *checkReport) validity(what string, notBefore, notAfter, now time.Time) {
	days := int(notAfter.Sub(now).Hours() / 24)
	switch {
	case now.After(notAfter):
		r.fail("%s expired on %s", what, notAfter.UTC().Format(time.DateOnly))
	case !notBefore.IsZero() && now.Before(notBefore):
		r.fail("%s is not valid before %s", what, notBefore.UTC().Format(time.DateOnly))
	case days < 30:
		r.warn("%s expires in %d days (%s): get the next one now", what, days, notAfter.UTC().Format(time.DateOnly))
	default:
		r.ok("%s is valid until %s (%d days)", what, notAfter.UTC().Format(time.DateOnly), days)
	}
}

func checkESIA(ctx context.Context, cfg *config.Config, online bool, r *checkReport) {
	e := cfg.Upstream.ESIA
	now := time.Now()
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	base := e.ESIABaseURL()
	tokenIssuer := e.TokenIssuer
	if tokenIssuer == "" {
		tokenIssuer = esia.IssuerFor(base)
	}
	r.info("ESIA: %s (%s); tokens must carry iss %s", base, firstNonEmptyString(e.BaseURL, "production"), tokenIssuer)
	r.info("client id (мнемоника): %s", e.ClientID)
	redirect := e.RedirectURI
	if redirect == "" {
		redirect = issuer + "/esia/callback"
	}
	uris := redirect
	if e.Logout {
		uris += " and " + issuer + "/oauth2/logout/done (the return from ESIA's logout)"
	}
	r.info("redirect URIs to register for the system at ESIA: %s", uris)

	// The system's certificate.
	data, err := os.ReadFile(e.CertFile)
	if err != nil {
		r.fail("upstream.esia.cert_file: %v", err)
		return
	}
	cert, err := gost.ParseCertificatePEM(data)
	if err != nil {
		r.fail("upstream.esia.cert_file %s is not a GOST R 34.10-2012 certificate (PEM or DER): %v", e.CertFile, err)
		return
	}
	r.ok("certificate %s: %s", e.CertFile, firstNonEmptyString(cert.Subject, "(no subject)"))
	r.validity("the certificate", cert.NotBefore, cert.NotAfter, now)
	r.info("certificate hash for ESIA's technology portal (client_certificate_hash): %s", gost.CertificateHash(cert.Raw))

	// The signer.
	signer := checkSigner(ctx, e, cert, r)
	if signer == nil {
		return
	}

	// A sample request, signed and checked as ESIA checks it.
	client, err := esia.New(esia.Config{BaseURL: base, ClientID: e.ClientID, RedirectURI: redirect, Scopes: strings.Fields(e.Scopes),
		AccessType: e.AccessType, Issuer: e.TokenIssuer, Timeout: e.Timeout}, signer)
	if err != nil {
		r.fail("%v", err)
		return
	}
	sample, err := client.AuthURL(ctx, uuid.NewString())
	if err != nil {
		r.fail("signing a sample request: %v", err)
		return
	}
	u, _ := url.Parse(sample)
	q := u.Query()
	sig, err := base64.RawURLEncoding.DecodeString(q.Get("client_secret"))
	msg := esia.SecretMessage(q.Get("client_id"), q.Get("scope"), q.Get("scope_org"), q.Get("timestamp"), q.Get("state"), q.Get("redirect_uri"), "")
	if err != nil || !cert.PublicKey.VerifyMessage([]byte(msg), sig) {
		r.fail("the sample request's client_secret does not verify against the certificate: ESIA would answer ESIA-007053")
	} else {
		r.ok("a sample /aas/oauth2/v2/ac request is signed and its client_secret verifies against the certificate (scopes: %s)", q.Get("scope"))
	}
	r.info("sample request: %s", sample)

	// ESIA's certificates.
	if strings.TrimSpace(e.VerifyCertFiles) == "" {
		r.fail("upstream.esia.verify_cert_files is empty: the broker could not verify ESIA's tokens (download ESIA's certificate for %s)", firstNonEmptyString(e.BaseURL, "production"))
	}
	for _, f := range strings.Split(e.VerifyCertFiles, ",") {
		if f = strings.TrimSpace(f); f == "" {
			continue
		}
		data, err := os.ReadFile(f)
		if err != nil {
			r.fail("upstream.esia.verify_cert_files: %v", err)
			continue
		}
		v, err := esia.NewTokenVerifier(data)
		if err != nil {
			r.fail("ESIA certificate %s: %v", f, err)
			continue
		}
		if own, err := gost.ParseCertificatePEM(data); err == nil && bytes.Equal(own.Raw, cert.Raw) {
			r.fail("%s is the system's own certificate (cert_file), not ESIA's: ESIA's tokens would not verify", f)
			continue
		}
		for _, c := range v.Certificates() {
			r.ok("ESIA certificate %s: %s (%s)", f, firstNonEmptyString(c.Subject, "(no subject)"), c.Alg)
			r.validity("ESIA's certificate "+f, time.Time{}, c.NotAfter, now)
		}
	}
	if online {
		checkOnline(ctx, client, r)
	}
}

// checkSigner makes the configured signer and proves it signs with the certificate's key.
func checkSigner(ctx context.Context, e config.ESIA, cert *gost.Certificate, r *checkReport) esia.Signer {
	switch e.Signer {
	case "gost":
		pem, err := os.ReadFile(e.KeyFile)
		if err != nil {
			r.fail("upstream.esia.key_file: %v", err)
			return nil
		}
		key, err := gost.ParsePrivateKeyPEM(pem)
		if err != nil {
			r.fail("upstream.esia.key_file %s is not a GOST R 34.10-2012 PKCS#8 key: %v", e.KeyFile, err)
			return nil
		}
		s, err := esia.NewKeySigner(key, cert.Raw)
		if err != nil {
			r.fail("the key in %s does not belong to the certificate in %s: ESIA would answer ESIA-007053", e.KeyFile, e.CertFile)
			return nil
		}
		r.ok("the key in %s belongs to the certificate", e.KeyFile)
		return s
	case "command":
		argv, err := esia.SplitCommand(e.SignerCommand)
		if err != nil {
			r.fail("upstream.esia.signer_command: %v", err)
			return nil
		}
		s := &esia.CommandSigner{Argv: argv, Reverse: e.SignerReverse, Hash: gost.CertificateHash(cert.Raw), Timeout: e.Timeout}
		msg := []byte("esia-broker esia check " + time.Now().UTC().Format(time.RFC3339Nano))
		sig, err := s.Sign(ctx, msg)
		if err != nil {
			r.fail("the signer command failed: %v", err)
			return nil
		}
		switch {
		case cert.PublicKey.VerifyMessage(msg, sig):
			r.ok("the signer command signs with the certificate's key (signer_reverse: %v)", e.SignerReverse)
			return s
		case cert.PublicKey.VerifyMessage(msg, gost.ReverseBytes(sig)):
			r.fail("the signer command's signature verifies only byte-reversed: set upstream.esia.signer_reverse: %v", !e.SignerReverse)
		default:
			r.fail("the signer command's signature does not verify against the certificate: it signs with another key, or not GOST R 34.10-2012 over Streebog-256")
		}
		return nil
	}
	r.fail("upstream.esia.signer must be gost or command, got %q", e.Signer)
	return nil
}

// checkOnline sends a fresh signed request to ESIA (as the broker's own probe does) and
// explains the answer. ESIA answers a request it takes with its login page (directly or by a
// redirect to it), and a refused one by redirecting to the redirect URI with error and an ESIA
// code, or with an error page.
func checkOnline(ctx context.Context, client *esia.Client, r *checkReport) {
	e, err := client.Probe(ctx)
	switch {
	case err != nil:
		r.fail("online: ESIA could not be reached or answered garbage: %v", err)
	case e == nil:
		r.ok("online: ESIA took the signed request (it answered with its login page, not an error)")
	case e.Code == "":
		r.fail("online: ESIA refused the request without an ESIA code: %v", e)
	default:
		explain(e, r)
	}
}

func explain(err error, r *checkReport) {
	code := esia.ErrorCode(err)
	info, known := esia.LookupCode(code)
	switch {
	case !known:
		r.fail("online: ESIA refused the request: %v", err)
	case info.Operator != "":
		r.fail("online: ESIA refused the request with %s (%s): %s", code, info.Meaning, info.Operator)
	default:
		r.fail("online: ESIA answered %s (%s)", code, info.Meaning)
	}
}

func firstNonEmptyString(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}
