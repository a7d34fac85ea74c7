package gost

import (
	"crypto/rand"
	"encoding/pem"
	"testing"
	"time"
)

func TestKeyAndCertificateRoundTrip(t *testing.T) {
	for _, c := range Curves() {
		t.Run(c.Name, func(t *testing.T) {
			k, err := GenerateKey(c, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			der, err := MarshalPKCS8PrivateKey(k)
			if err != nil {
				t.Fatal(err)
			}
			k2, err := ParsePKCS8PrivateKey(der)
			if err != nil {
				t.Fatal(err)
			}
			if k2.D.Cmp(k.D) != 0 || k2.X.Cmp(k.X) != 0 || k2.Curve.Name != c.Name {
				t.Fatal("PKCS#8 round trip changed the key")
			}
			cert, err := CreateSelfSignedCertificate(k, "esia-broker test", time.Now(), time.Now().Add(time.Hour))
			if err != nil {
				t.Fatal(err)
			}
			pc, err := ParseCertificate(cert)
			if err != nil {
				t.Fatal(err)
			}
			if pc.PublicKey.X.Cmp(k.X) != 0 || pc.PublicKey.Y.Cmp(k.Y) != 0 {
				t.Fatal("certificate carries another key")
			}
			if !CertificateSignatureValid(cert, &k.PublicKey) {
				t.Error("certificate signature does not verify")
			}
			if h := CertificateHash(cert); len(h) != 64 || h != toUpperHex(Sum256(cert)) {
				t.Errorf("certificate hash %s", h)
			}
		})
	}
}

func toUpperHex(b [32]byte) string {
	const digits = "0123456789ABCDEF"
	out := make([]byte, 64)
	for i, v := range b {
		out[2*i], out[2*i+1] = digits[v>>4], digits[v&15]
	}
	return string(out)
}

func TestParseRejectsBadInput(t *testing.T) {
	for name, in := range map[string][]byte{"empty": nil, "junk": []byte("junk"), "rsa-ish": {0x30, 0x03, 0x02, 0x01, 0x00}} {
		if _, err := ParsePKCS8PrivateKey(in); err == nil {
			t.Errorf("%s: private key accepted", name)
		}
		if _, err := ParseCertificate(in); err == nil {
			t.Errorf("%s: certificate accepted", name)
		}
	}
	if _, err := ParsePrivateKeyPEM(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte{1}})); err == nil {
		t.Error("wrong PEM type accepted")
	}
}
