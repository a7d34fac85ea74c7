package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/esia-broker/esia-broker/broker"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/gost"
)

// buildConnectors makes the upstream connectors the configuration enables. verifier, when not
// nil, replaces the ESIA token verifier read from files (the dev server's emulator).
func buildConnectors(cfg *config.Config, verifier *esia.TokenVerifier) ([]broker.Connector, error) {
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	var out []broker.Connector
	if e := cfg.Upstream.ESIA; e.Enabled {
		certPEM, err := os.ReadFile(e.CertFile)
		if err != nil {
			return nil, fmt.Errorf("upstream.esia.cert_file: %w", err)
		}
		cert, err := gost.ParseCertificatePEM(certPEM)
		if err != nil {
			return nil, fmt.Errorf("upstream.esia.cert_file: %w", err)
		}
		var signer esia.Signer
		switch e.Signer {
		case "gost":
			keyPEM, err := os.ReadFile(e.KeyFile)
			if err != nil {
				return nil, fmt.Errorf("upstream.esia.key_file: %w", err)
			}
			key, err := gost.ParsePrivateKeyPEM(keyPEM)
			if err != nil {
				return nil, fmt.Errorf("upstream.esia.key_file: %w", err)
			}
			if signer, err = esia.NewKeySigner(key, cert.Raw); err != nil {
				return nil, err
			}
		case "command":
			signer = &esia.CommandSigner{Argv: strings.Fields(e.SignerCommand), Reverse: e.SignerReverse, Hash: gost.CertificateHash(cert.Raw), Timeout: e.Timeout}
		}
		if verifier == nil && e.VerifyCertFiles != "" {
			var pems [][]byte
			for _, f := range strings.Split(e.VerifyCertFiles, ",") {
				b, err := os.ReadFile(strings.TrimSpace(f))
				if err != nil {
					return nil, fmt.Errorf("upstream.esia.verify_cert_files: %w", err)
				}
				pems = append(pems, b)
			}
			if verifier, err = esia.NewTokenVerifier(pems...); err != nil {
				return nil, fmt.Errorf("upstream.esia.verify_cert_files: %w", err)
			}
		}
		redirect := e.RedirectURI
		if redirect == "" {
			redirect = issuer + "/esia/callback"
		}
		client, err := esia.New(esia.Config{
			BaseURL: e.ESIABaseURL(), ClientID: e.ClientID, RedirectURI: redirect, Scopes: strings.Fields(e.Scopes),
			AccessType: e.AccessType, Issuer: e.TokenIssuer, Timeout: e.Timeout, Verifier: verifier,
		}, signer)
		if err != nil {
			return nil, err
		}
		out = append(out, broker.NewESIAConnector(client))
	}
	if o := cfg.Upstream.OIDC; o.Enabled {
		redirect := o.RedirectURI
		if redirect == "" {
			redirect = issuer + "/oidc/callback"
		}
		c, err := broker.NewOIDCConnector(broker.OIDCConnectorConfig{
			Issuer: o.Issuer, ClientID: o.ClientID, ClientSecret: o.ClientSecret, RedirectURI: redirect,
			Scopes: strings.Fields(o.Scopes), DisplayName: o.DisplayName,
			Claims: broker.OIDCClaims{Subject: o.ClaimSubject, FamilyName: o.ClaimFamilyName, GivenName: o.ClaimGivenName,
				MiddleName: o.ClaimMiddleName, Birthdate: o.ClaimBirthdate, SNILS: o.ClaimSNILS, Trusted: o.ClaimTrusted},
		})
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
	return out, nil
}
