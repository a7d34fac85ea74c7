package esia

import (
	"crypto"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/esia/gost"
)

// AlgGOST is the JWT alg ESIA uses for GOST R 34.10-2012 signatures.
const AlgGOST = "GOST3410_2012_256"

// TokenVerifier checks ESIA token signatures against ESIA's published certificates.
type TokenVerifier struct {
	rsaKeys  []*rsa.PublicKey
	gostKeys []*gost.PublicKey
	certs    []CertificateInfo
}

// CertificateInfo describes one certificate a verifier trusts: what an operator watches, as
// ESIA replaces its test certificate every year.
type CertificateInfo struct {
	Subject   string
	NotBefore time.Time
	NotAfter  time.Time
	// Alg is GOST3410_2012_256 or RS256.
	Alg string
}

// NewTokenVerifier reads ESIA's certificates. Each argument is a file's content: PEM with one
// or more CERTIFICATE blocks, or one DER certificate (a .cer as ESIA hands it out). Keys are
// RSA or GOST.
func NewTokenVerifier(data ...[]byte) (*TokenVerifier, error) {
	v := &TokenVerifier{}
	for i, d := range data {
		ders, err := certificateDERs(d)
		if err != nil {
			return nil, fmt.Errorf("esia verifier: certificate file %d: %w", i+1, err)
		}
		for _, der := range ders {
			if err := v.add(der); err != nil {
				return nil, fmt.Errorf("esia verifier: certificate file %d: %w", i+1, err)
			}
		}
	}
	if len(v.rsaKeys)+len(v.gostKeys) == 0 {
		return nil, errors.New("esia verifier: no certificate found")
	}
	return v, nil
}

// certificateDERs returns the CERTIFICATE blocks of PEM data, or data itself when it is DER.
func certificateDERs(data []byte) ([][]byte, error) {
	var out [][]byte
	rest := data
	for {
		var blk *pem.Block
		blk, rest = pem.Decode(rest)
		if blk == nil {
			break
		}
		if blk.Type == "CERTIFICATE" {
			out = append(out, blk.Bytes)
		}
	}
	if len(out) > 0 {
		return out, nil
	}
	if len(data) > 0 && data[0] == 0x30 { // an ASN.1 SEQUENCE: one DER certificate
		return [][]byte{data}, nil
	}
	return nil, errors.New("neither PEM CERTIFICATE blocks nor a DER certificate")
}

func (v *TokenVerifier) add(der []byte) error {
	if gc, err := gost.ParseCertificate(der); err == nil {
		gc.PublicKey.Precompute() // ESIA's key verifies every login's token
		v.gostKeys = append(v.gostKeys, gc.PublicKey)
		v.certs = append(v.certs, CertificateInfo{Subject: gc.Subject, NotBefore: gc.NotBefore, NotAfter: gc.NotAfter, Alg: AlgGOST})
		return nil
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		return fmt.Errorf("parse certificate: %w", err)
	}
	rk, ok := c.PublicKey.(*rsa.PublicKey)
	if !ok {
		return fmt.Errorf("certificate key %T is neither RSA nor GOST", c.PublicKey)
	}
	v.rsaKeys = append(v.rsaKeys, rk)
	v.certs = append(v.certs, CertificateInfo{Subject: c.Subject.String(), NotBefore: c.NotBefore, NotAfter: c.NotAfter, Alg: "RS256"})
	return nil
}

// Certificates lists the certificates read from files (not keys added directly).
func (v *TokenVerifier) Certificates() []CertificateInfo { return slices.Clone(v.certs) }

// AddRSA and AddGOST add keys directly (tests, the emulator).
func (v *TokenVerifier) AddRSA(k *rsa.PublicKey) { v.rsaKeys = append(v.rsaKeys, k) }

// AddGOST adds a GOST key.
func (v *TokenVerifier) AddGOST(k *gost.PublicKey) {
	k.Precompute()
	v.gostKeys = append(v.gostKeys, k)
}

func (v *TokenVerifier) verify(alg string, signingInput, sig []byte) error {
	switch alg {
	case "RS256":
		h := sha256.Sum256(signingInput)
		for _, k := range v.rsaKeys {
			if rsa.VerifyPKCS1v15(k, crypto.SHA256, h[:], sig) == nil {
				return nil
			}
		}
	case AlgGOST:
		// ESIA's guide does not fix the byte order of a GOST JWT signature in every version;
		// both orders are checked. Either one proves the holder of ESIA's key signed.
		d := gost.Sum256(signingInput)
		for _, k := range v.gostKeys {
			if k.Verify(d[:], sig) || k.Verify(d[:], gost.ReverseBytes(sig)) {
				return nil
			}
		}
	default:
		return fmt.Errorf("esia token: unsupported alg %q", alg)
	}
	return errors.New("esia token: signature does not verify against ESIA's certificates")
}

// AccessClaims are the checked claims of an ESIA access token.
type AccessClaims struct {
	OID      string
	SID      string
	Scopes   []string
	ClientID string
	Issuer   string
	Expiry   time.Time
}

type jwtHeader struct {
	Alg string `json:"alg"`
	Typ string `json:"typ"`
	Kid string `json:"kid"`
}

// decodeJWT splits a compact JWT and decodes its header and claims.
func decodeJWT(token string) (jwtHeader, map[string]any, []byte, []byte, error) {
	var h jwtHeader
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return h, nil, nil, nil, fmt.Errorf("%w: token is not a compact JWT", ErrBadResponse)
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	pb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err1 != nil || err2 != nil || err3 != nil {
		return h, nil, nil, nil, fmt.Errorf("%w: token is not base64url", ErrBadResponse)
	}
	if err := json.Unmarshal(hb, &h); err != nil {
		return h, nil, nil, nil, fmt.Errorf("%w: token header: %v", ErrBadResponse, err)
	}
	claims := map[string]any{}
	dec := json.NewDecoder(strings.NewReader(string(pb)))
	dec.UseNumber()
	if err := dec.Decode(&claims); err != nil {
		return h, nil, nil, nil, fmt.Errorf("%w: token claims: %v", ErrBadResponse, err)
	}
	return h, claims, []byte(parts[0] + "." + parts[1]), sig, nil
}

func claimString(c map[string]any, k string) string {
	switch v := c[k].(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return ""
}

func claimTime(c map[string]any, k string) (time.Time, bool) {
	var n int64
	switch v := c[k].(type) {
	case json.Number:
		f, err := strconv.ParseFloat(v.String(), 64)
		if err != nil {
			return time.Time{}, false
		}
		n = int64(f)
	case string:
		i, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return time.Time{}, false
		}
		n = i
	default:
		return time.Time{}, false
	}
	return time.Unix(n, 0), true
}

// VerifyAccessToken checks an ESIA access token: signature (when a verifier is configured),
// iss, client_id, exp / nbf / iat with leeway, and a subject.
func (c *Client) VerifyAccessToken(token string) (*AccessClaims, error) {
	h, claims, input, sig, err := decodeJWT(token)
	if err != nil {
		return nil, err
	}
	if c.cfg.Verifier != nil {
		if err := c.cfg.Verifier.verify(h.Alg, input, sig); err != nil {
			return nil, err
		}
	} else if h.Alg != "RS256" && h.Alg != AlgGOST {
		return nil, fmt.Errorf("esia token: unsupported alg %q", h.Alg)
	}
	now := c.cfg.Now()
	var problems []string
	if iss := claimString(claims, "iss"); iss != c.cfg.Issuer {
		problems = append(problems, fmt.Sprintf("iss %q, want %q", iss, c.cfg.Issuer))
	}
	if cid := claimString(claims, "client_id"); cid != c.cfg.ClientID {
		problems = append(problems, fmt.Sprintf("client_id %q, want %q", cid, c.cfg.ClientID))
	}
	exp, ok := claimTime(claims, "exp")
	if !ok {
		problems = append(problems, "no exp")
	} else if now.After(exp.Add(c.cfg.Leeway)) {
		problems = append(problems, "expired")
	}
	if nbf, ok := claimTime(claims, "nbf"); ok && now.Add(c.cfg.Leeway).Before(nbf) {
		problems = append(problems, "not yet valid (nbf)")
	}
	if iat, ok := claimTime(claims, "iat"); ok && now.Add(c.cfg.Leeway).Before(iat) {
		problems = append(problems, "issued in the future (iat)")
	}
	oid := claimString(claims, "urn:esia:sbj_id")
	if oid == "" {
		problems = append(problems, "no urn:esia:sbj_id")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("esia token rejected: %s", strings.Join(problems, "; "))
	}
	var scopes []string
	for _, s := range strings.Fields(claimString(claims, "scope")) {
		name, _, _ := strings.Cut(s, "?")
		scopes = append(scopes, name)
	}
	return &AccessClaims{OID: oid, SID: claimString(claims, "urn:esia:sid"), Scopes: scopes, ClientID: claimString(claims, "client_id"), Issuer: claimString(claims, "iss"), Expiry: exp}, nil
}

// IDClaims are the checked claims of an ESIA ID token that the broker uses.
type IDClaims struct {
	Subject string
	// AuthTime is when the person last authenticated at ESIA: with ESIA's single sign-on it
	// can be long before this login.
	AuthTime time.Time
}

// VerifyIDToken checks an ESIA ID token as VerifyAccessToken checks access tokens — signature,
// iss, expiry — and that it was issued to this client (aud) for the person oid (sub), and
// returns its auth_time.
func (c *Client) VerifyIDToken(token, oid string) (*IDClaims, error) {
	h, claims, input, sig, err := decodeJWT(token)
	if err != nil {
		return nil, err
	}
	if c.cfg.Verifier != nil {
		if err := c.cfg.Verifier.verify(h.Alg, input, sig); err != nil {
			return nil, err
		}
	}
	now := c.cfg.Now()
	var problems []string
	if iss := claimString(claims, "iss"); iss != c.cfg.Issuer {
		problems = append(problems, fmt.Sprintf("iss %q, want %q", iss, c.cfg.Issuer))
	}
	audOK := false
	switch a := claims["aud"].(type) {
	case string:
		audOK = a == c.cfg.ClientID
	case []any:
		for _, x := range a {
			if s, _ := x.(string); s == c.cfg.ClientID {
				audOK = true
			}
		}
	}
	if !audOK {
		problems = append(problems, "aud is not this client")
	}
	if sub := claimString(claims, "sub"); sub != oid {
		problems = append(problems, "sub is not the access token's person")
	}
	if exp, ok := claimTime(claims, "exp"); !ok || now.After(exp.Add(c.cfg.Leeway)) {
		problems = append(problems, "expired or no exp")
	}
	at, ok := claimTime(claims, "auth_time")
	if !ok {
		problems = append(problems, "no auth_time")
	}
	if len(problems) > 0 {
		return nil, fmt.Errorf("%w: esia id token rejected: %s", ErrBadResponse, strings.Join(problems, "; "))
	}
	return &IDClaims{Subject: oid, AuthTime: at}, nil
}
