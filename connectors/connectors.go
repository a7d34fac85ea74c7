// Package connectors makes the upstream connectors the configuration enables (ESIA directly, an
// OpenID Connect gateway), and checks the direct ESIA connection for `esia-broker esia check`.
package connectors

import (
	"fmt"
	"os"
	"strings"

	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/upstream/esiaconn"
	"github.com/esia-broker/esia-broker/upstream/oidcconn"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/gost"
)

// esiaParts are the pieces of the ESIA connector, each checked: what `esia check` reports on.
type esiaParts struct {
	cert     *gost.Certificate
	key      *gost.PrivateKey // nil with a command signer
	signer   esia.Signer
	verifier *esia.TokenVerifier
	client   *esia.Client
}

func (p *esiaParts) certificates() []upstream.CertificateInfo {
	out := []upstream.CertificateInfo{{Role: "client", Subject: p.cert.Subject, NotBefore: p.cert.NotBefore, NotAfter: p.cert.NotAfter}}
	if p.verifier != nil {
		for _, c := range p.verifier.Certificates() {
			out = append(out, upstream.CertificateInfo{Role: "esia", Subject: c.Subject, NotBefore: c.NotBefore, NotAfter: c.NotAfter})
		}
	}
	return out
}

// buildESIA reads the ESIA connector's key, certificates and signer. verifier, when not nil,
// replaces ESIA's certificates (the dev server's emulator).
func buildESIA(e config.ESIA, issuer string, verifier *esia.TokenVerifier) (*esiaParts, error) {
	p := &esiaParts{verifier: verifier}
	certData, err := os.ReadFile(e.CertFile)
	if err != nil {
		return nil, fmt.Errorf("upstream.esia.cert_file: %w", err)
	}
	if p.cert, err = gost.ParseCertificatePEM(certData); err != nil {
		return nil, fmt.Errorf("upstream.esia.cert_file %s: %w", e.CertFile, err)
	}
	switch e.Signer {
	case "gost":
		keyPEM, err := os.ReadFile(e.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.esia.key_file: %w", err)
		}
		if p.key, err = gost.ParsePrivateKeyPEM(keyPEM); err != nil {
			return nil, fmt.Errorf("upstream.esia.key_file %s: %w", e.KeyFile, err)
		}
		if p.signer, err = esia.NewKeySigner(p.key, p.cert.Raw); err != nil {
			return nil, fmt.Errorf("upstream.esia.key_file and cert_file: %w", err)
		}
	case "command":
		argv, err := esia.SplitCommand(e.SignerCommand)
		if err != nil {
			return nil, fmt.Errorf("upstream.esia.signer_command: %w", err)
		}
		p.signer = &esia.CommandSigner{Argv: argv, Reverse: e.SignerReverse, Hash: gost.CertificateHash(p.cert.Raw), Timeout: e.Timeout}
	default:
		return nil, fmt.Errorf("upstream.esia.signer: must be gost or command, got %q", e.Signer)
	}
	if p.verifier == nil && strings.TrimSpace(e.VerifyCertFiles) != "" {
		var files [][]byte
		for _, f := range strings.Split(e.VerifyCertFiles, ",") {
			b, err := os.ReadFile(strings.TrimSpace(f))
			if err != nil {
				return nil, fmt.Errorf("upstream.esia.verify_cert_files: %w", err)
			}
			files = append(files, b)
		}
		if p.verifier, err = esia.NewTokenVerifier(files...); err != nil {
			return nil, fmt.Errorf("upstream.esia.verify_cert_files: %w", err)
		}
	}
	redirect := e.RedirectURI
	if redirect == "" {
		redirect = issuer + "/esia/callback"
	}
	p.client, err = esia.New(esia.Config{
		BaseURL: e.ESIABaseURL(), ClientID: e.ClientID, RedirectURI: redirect, Scopes: strings.Fields(e.Scopes),
		AccessType: e.AccessType, Issuer: e.TokenIssuer, Timeout: e.Timeout, Verifier: p.verifier,
	}, p.signer)
	if err != nil {
		return nil, err
	}
	return p, nil
}

// Build makes the upstream connectors the configuration enables. verifier, when not
// nil, replaces the ESIA token verifier read from files (the dev server's emulator).
func Build(cfg *config.Config, verifier *esia.TokenVerifier) ([]upstream.Connector, error) {
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	var out []upstream.Connector
	if e := cfg.Upstream.ESIA; e.Enabled {
		p, err := buildESIA(e, issuer, verifier)
		if err != nil {
			return nil, err
		}
		c, err := esiaconn.Config{Client: p.client, KeepESIASession: !e.Logout, Certificates: p.certificates()}.Open()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	if o := cfg.Upstream.OIDC; o.Enabled {
		redirect := o.RedirectURI
		if redirect == "" {
			redirect = issuer + "/oidc/callback"
		}
		c, err := oidcconn.Config{
			Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURI: redirect,
			Scopes: strings.Fields(o.Scopes), DisplayName: o.DisplayName,
			Claims: oidcconn.Claims{Subject: o.ClaimSubject, FamilyName: o.ClaimFamilyName, GivenName: o.ClaimGivenName,
				MiddleName: o.ClaimMiddleName, Birthdate: o.ClaimBirthdate, SNILS: o.ClaimSNILS, Trusted: o.ClaimTrusted},
		}.Open()
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
