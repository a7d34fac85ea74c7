package gost

import (
	"crypto/rand"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"
)

type algorithmParams struct {
	ParamSet asn1.ObjectIdentifier
	Digest   asn1.ObjectIdentifier `asn1:"optional"`
}

type algorithmIdentifier struct {
	Algorithm  asn1.ObjectIdentifier
	Parameters asn1.RawValue `asn1:"optional"`
}

type pkcs8 struct {
	Version    int
	Algorithm  algorithmIdentifier
	PrivateKey []byte
}

type subjectPublicKeyInfo struct {
	Algorithm algorithmIdentifier
	PublicKey asn1.BitString
}

func keyAlgorithm(c *Curve) (algorithmIdentifier, error) {
	params, err := asn1.Marshal(algorithmParams{ParamSet: c.OID, Digest: OIDDigest256})
	if err != nil {
		return algorithmIdentifier{}, err
	}
	return algorithmIdentifier{Algorithm: OIDPublicKey256, Parameters: asn1.RawValue{FullBytes: params}}, nil
}

func curveOf(a algorithmIdentifier) (*Curve, error) {
	if !a.Algorithm.Equal(OIDPublicKey256) {
		return nil, fmt.Errorf("gost: key algorithm %v is not GOST R 34.10-2012 256-bit (%v)", a.Algorithm, OIDPublicKey256)
	}
	var p algorithmParams
	if _, err := asn1.Unmarshal(a.Parameters.FullBytes, &p); err != nil {
		return nil, fmt.Errorf("gost: key parameters: %w", err)
	}
	c, ok := CurveByOID(p.ParamSet)
	if !ok {
		return nil, fmt.Errorf("gost: unsupported parameter set %v", p.ParamSet)
	}
	return c, nil
}

// ParsePKCS8PrivateKey parses a PKCS#8 GOST key as OpenSSL's gost engine writes it: the 32-byte
// scalar little-endian in the privateKey OCTET STRING (a nested OCTET STRING or an INTEGER, as
// other tools write, are accepted too).
func ParsePKCS8PrivateKey(der []byte) (*PrivateKey, error) {
	var k pkcs8
	if rest, err := asn1.Unmarshal(der, &k); err != nil {
		return nil, fmt.Errorf("gost: parse PKCS#8: %w", err)
	} else if len(rest) > 0 {
		return nil, errors.New("gost: trailing data after PKCS#8")
	}
	c, err := curveOf(k.Algorithm)
	if err != nil {
		return nil, err
	}
	raw := k.PrivateKey
	var d *big.Int
	switch {
	case len(raw) == 32:
		d = new(big.Int).SetBytes(ReverseBytes(raw))
	case len(raw) == 34 && raw[0] == 0x04 && raw[1] == 32:
		d = new(big.Int).SetBytes(ReverseBytes(raw[2:]))
	case len(raw) > 2 && raw[0] == 0x02:
		d = new(big.Int)
		if _, err := asn1.Unmarshal(raw, &d); err != nil {
			return nil, fmt.Errorf("gost: private key INTEGER: %w", err)
		}
	default:
		return nil, fmt.Errorf("gost: private key of %d bytes in an unknown encoding", len(raw))
	}
	for i := range raw {
		raw[i] = 0
	}
	return NewPrivateKey(c, d)
}

// MarshalPKCS8PrivateKey writes k as OpenSSL's gost engine does.
func MarshalPKCS8PrivateKey(k *PrivateKey) ([]byte, error) {
	alg, err := keyAlgorithm(k.Curve)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(pkcs8{Version: 0, Algorithm: alg, PrivateKey: ReverseBytes(k.D.FillBytes(make([]byte, 32)))})
}

// ParsePrivateKeyPEM parses a "PRIVATE KEY" PEM block.
func ParsePrivateKeyPEM(b []byte) (*PrivateKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil || blk.Type != "PRIVATE KEY" {
		return nil, errors.New("gost: no PRIVATE KEY PEM block")
	}
	return ParsePKCS8PrivateKey(blk.Bytes)
}

func (p *PublicKey) pointBytes() []byte {
	out := make([]byte, 64)
	copy(out[:32], ReverseBytes(p.X.FillBytes(make([]byte, 32))))
	copy(out[32:], ReverseBytes(p.Y.FillBytes(make([]byte, 32))))
	return out
}

// ParsePublicKeyInfo parses a SubjectPublicKeyInfo holding a GOST key: an OCTET STRING of X || Y,
// each 32 bytes little-endian.
func ParsePublicKeyInfo(der []byte) (*PublicKey, error) {
	var spki subjectPublicKeyInfo
	if _, err := asn1.Unmarshal(der, &spki); err != nil {
		return nil, fmt.Errorf("gost: parse public key info: %w", err)
	}
	c, err := curveOf(spki.Algorithm)
	if err != nil {
		return nil, err
	}
	var raw []byte
	if _, err := asn1.Unmarshal(spki.PublicKey.RightAlign(), &raw); err != nil {
		return nil, fmt.Errorf("gost: public key point: %w", err)
	}
	if len(raw) != 64 {
		return nil, fmt.Errorf("gost: public key point of %d bytes, want 64", len(raw))
	}
	x := new(big.Int).SetBytes(ReverseBytes(raw[:32]))
	y := new(big.Int).SetBytes(ReverseBytes(raw[32:]))
	if !c.IsOnCurve(x, y) {
		return nil, errors.New("gost: public key point is not on the curve")
	}
	return &PublicKey{Curve: c, X: x, Y: y, tab: &keyTables{}}, nil
}

// MarshalPublicKeyInfo writes p as a SubjectPublicKeyInfo.
func MarshalPublicKeyInfo(p *PublicKey) ([]byte, error) {
	alg, err := keyAlgorithm(p.Curve)
	if err != nil {
		return nil, err
	}
	point, err := asn1.Marshal(p.pointBytes())
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(subjectPublicKeyInfo{Algorithm: alg, PublicKey: asn1.BitString{Bytes: point, BitLength: 8 * len(point)}})
}

type tbsCertificate struct {
	Raw                asn1.RawContent
	Version            int `asn1:"optional,explicit,default:0,tag:0"`
	SerialNumber       *big.Int
	SignatureAlgorithm pkix.AlgorithmIdentifier
	Issuer             asn1.RawValue
	Validity           struct{ NotBefore, NotAfter time.Time }
	Subject            asn1.RawValue
	PublicKey          asn1.RawValue
	Extensions         asn1.RawValue `asn1:"optional,explicit,tag:3"`
}

type certificate struct {
	TBS                asn1.RawValue
	SignatureAlgorithm pkix.AlgorithmIdentifier
	SignatureValue     asn1.BitString
}

// Certificate is the part of an X.509 certificate the ESIA client needs.
type Certificate struct {
	Raw       []byte
	PublicKey *PublicKey
	NotBefore time.Time
	NotAfter  time.Time
	// Subject is the subject's distinguished name, as pkix.Name prints it.
	Subject string
}

// ParseCertificate parses a DER certificate with a GOST public key. Go's crypto/x509 does not
// know GOST keys, so only what is needed is read here.
func ParseCertificate(der []byte) (*Certificate, error) {
	var c certificate
	if rest, err := asn1.Unmarshal(der, &c); err != nil {
		return nil, fmt.Errorf("gost: parse certificate: %w", err)
	} else if len(rest) > 0 {
		return nil, errors.New("gost: trailing data after certificate")
	}
	var tbs tbsCertificate
	if _, err := asn1.Unmarshal(c.TBS.FullBytes, &tbs); err != nil {
		return nil, fmt.Errorf("gost: parse certificate body: %w", err)
	}
	pub, err := ParsePublicKeyInfo(tbs.PublicKey.FullBytes)
	if err != nil {
		return nil, err
	}
	var subject string
	var rdn pkix.RDNSequence
	if _, err := asn1.Unmarshal(tbs.Subject.FullBytes, &rdn); err == nil {
		var n pkix.Name
		n.FillFromRDNSequence(&rdn)
		subject = n.String()
	}
	return &Certificate{Raw: der, PublicKey: pub, NotBefore: tbs.Validity.NotBefore, NotAfter: tbs.Validity.NotAfter, Subject: subject}, nil
}

// ParseCertificatePEM parses the first CERTIFICATE PEM block, or, when b holds no PEM at
// all, b as DER: certificates are handed out both ways (a .cer from a CA is often DER).
func ParseCertificatePEM(b []byte) (*Certificate, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		if len(b) > 0 && b[0] == 0x30 { // an ASN.1 SEQUENCE: DER
			return ParseCertificate(b)
		}
		return nil, errors.New("gost: neither a CERTIFICATE PEM block nor a DER certificate")
	}
	if blk.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("gost: PEM block is %q, want CERTIFICATE", blk.Type)
	}
	return ParseCertificate(blk.Bytes)
}

// CertificateHash is ESIA's client_certificate_hash: Streebog-256 of the certificate's DER,
// upper-case hex.
func CertificateHash(der []byte) string {
	h := Sum256(der)
	return strings.ToUpper(hex.EncodeToString(h[:]))
}

// CreateSelfSignedCertificate makes a self-signed certificate for k (DER), signed with GOST
// R 34.10-2012 over Streebog-256. The dev server and tests use it; production certificates
// come from an accredited CA.
func CreateSelfSignedCertificate(k *PrivateKey, commonName string, notBefore, notAfter time.Time) ([]byte, error) {
	name, err := asn1.Marshal(pkix.Name{CommonName: commonName}.ToRDNSequence())
	if err != nil {
		return nil, err
	}
	spki, err := MarshalPublicKeyInfo(&k.PublicKey)
	if err != nil {
		return nil, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return nil, err
	}
	sigAlg := pkix.AlgorithmIdentifier{Algorithm: OIDSignWithDigest256}
	tbs := tbsCertificate{
		Version: 2, SerialNumber: serial, SignatureAlgorithm: sigAlg,
		Issuer: asn1.RawValue{FullBytes: name}, Subject: asn1.RawValue{FullBytes: name},
		PublicKey: asn1.RawValue{FullBytes: spki},
	}
	tbs.Validity.NotBefore, tbs.Validity.NotAfter = notBefore.UTC().Truncate(time.Second), notAfter.UTC().Truncate(time.Second)
	tbsDER, err := asn1.Marshal(tbs)
	if err != nil {
		return nil, err
	}
	sig, err := k.SignMessage(rand.Reader, tbsDER)
	if err != nil {
		return nil, err
	}
	return asn1.Marshal(certificate{
		TBS: asn1.RawValue{FullBytes: tbsDER}, SignatureAlgorithm: sigAlg,
		SignatureValue: asn1.BitString{Bytes: sig, BitLength: 8 * len(sig)},
	})
}

// CertificateSignatureValid checks the certificate's own GOST signature against pub.
func CertificateSignatureValid(der []byte, pub *PublicKey) bool {
	var c certificate
	if _, err := asn1.Unmarshal(der, &c); err != nil {
		return false
	}
	return pub.VerifyMessage(c.TBS.FullBytes, c.SignatureValue.RightAlign())
}
