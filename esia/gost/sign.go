package gost

import (
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"math/big"
)

// PublicKey is a GOST R 34.10-2012 256-bit public key.
type PublicKey struct {
	Curve *Curve
	X, Y  *big.Int
	tab   *keyTables
}

// PrivateKey is a GOST R 34.10-2012 256-bit private key.
type PrivateKey struct {
	PublicKey
	D *big.Int
}

// SignatureSize is the size of a signature: s and r, 32 bytes each.
const SignatureSize = 64

// GenerateKey makes a fresh key on curve c.
func GenerateKey(c *Curve, random io.Reader) (*PrivateKey, error) {
	for {
		d, err := rand.Int(random, c.Q)
		if err != nil {
			return nil, fmt.Errorf("generate GOST key: %w", err)
		}
		if d.Sign() == 0 {
			continue
		}
		return NewPrivateKey(c, d)
	}
}

// NewPrivateKey makes the key with scalar d on curve c, computing its public point.
func NewPrivateKey(c *Curve, d *big.Int) (*PrivateKey, error) {
	if d.Sign() <= 0 || d.Cmp(c.Q) >= 0 {
		return nil, errors.New("gost: private scalar out of range")
	}
	x, y, ok := c.affine(c.scalarMult(c.X, c.Y, d))
	if !ok {
		return nil, errors.New("gost: bad private scalar")
	}
	return &PrivateKey{PublicKey: PublicKey{Curve: c, X: x, Y: y, tab: &keyTables{}}, D: new(big.Int).Set(d)}, nil
}

// Zero overwrites the private scalar.
func (k *PrivateKey) Zero() {
	if k != nil && k.D != nil {
		k.D.SetInt64(0)
	}
}

// digestToE turns a Streebog digest into the number e of GOST R 34.10-2012 §6.1: the digest
// read as a little-endian integer (OpenSSL's gost engine convention), reduced mod q, 1 for 0.
func digestToE(c *Curve, digest []byte) *big.Int {
	rev := make([]byte, len(digest))
	for i, b := range digest {
		rev[len(digest)-1-i] = b
	}
	e := new(big.Int).SetBytes(rev)
	e.Mod(e, c.Q)
	if e.Sign() == 0 {
		e.SetInt64(1)
	}
	return e
}

// Sign signs a Streebog-256 digest with a fresh random nonce. The signature is s || r, each
// 32 bytes big-endian: what `openssl dgst -md_gost12_256 -sign` writes and ESIA accepts.
func (k *PrivateKey) Sign(random io.Reader, digest []byte) ([]byte, error) {
	e := digestToE(k.Curve, digest)
	for {
		nonce, err := rand.Int(random, k.Curve.Q)
		if err != nil {
			return nil, fmt.Errorf("gost sign: %w", err)
		}
		if nonce.Sign() == 0 {
			continue
		}
		r, s, ok := k.signWithNonce(e, nonce)
		nonce.SetInt64(0)
		if ok {
			return encodeSignature(r, s), nil
		}
	}
}

// SignMessage hashes msg with Streebog-256 and signs it.
func (k *PrivateKey) SignMessage(random io.Reader, msg []byte) ([]byte, error) {
	d := Sum256(msg)
	return k.Sign(random, d[:])
}

func (k *PrivateKey) signWithNonce(e, nonce *big.Int) (r, s *big.Int, ok bool) {
	c := k.Curve
	x, _, okp := c.affine(k.baseMult(nonce))
	if !okp {
		return nil, nil, false
	}
	r = new(big.Int).Mod(x, c.Q)
	if r.Sign() == 0 {
		return nil, nil, false
	}
	s = new(big.Int).Mul(r, k.D)
	s.Add(s, new(big.Int).Mul(nonce, e))
	s.Mod(s, c.Q)
	if s.Sign() == 0 {
		return nil, nil, false
	}
	return r, s, true
}

func encodeSignature(r, s *big.Int) []byte {
	out := make([]byte, SignatureSize)
	s.FillBytes(out[:32])
	r.FillBytes(out[32:])
	return out
}

// Verify checks a signature (s || r, as Sign writes) of a Streebog-256 digest.
func (p *PublicKey) Verify(digest, sig []byte) bool {
	if len(sig) != SignatureSize {
		return false
	}
	c := p.Curve
	s := new(big.Int).SetBytes(sig[:32])
	r := new(big.Int).SetBytes(sig[32:])
	if r.Sign() <= 0 || s.Sign() <= 0 || r.Cmp(c.Q) >= 0 || s.Cmp(c.Q) >= 0 {
		return false
	}
	e := digestToE(c, digest)
	v := new(big.Int).ModInverse(e, c.Q)
	z1 := new(big.Int).Mul(s, v)
	z1.Mod(z1, c.Q)
	z2 := new(big.Int).Mul(r, v)
	z2.Neg(z2)
	z2.Mod(z2, c.Q)
	sum := c.add(p.baseMult(z1), p.pointMult(z2))
	x, _, ok := c.affine(sum)
	if !ok {
		return false
	}
	return x.Mod(x, c.Q).Cmp(r) == 0
}

// VerifyMessage hashes msg with Streebog-256 and checks sig.
func (p *PublicKey) VerifyMessage(msg, sig []byte) bool {
	d := Sum256(msg)
	return p.Verify(d[:], sig)
}

// ReverseBytes returns b reversed: CryptoPro writes signatures in the opposite byte order to
// OpenSSL, so its output must be reversed before it is sent to ESIA.
func ReverseBytes(b []byte) []byte {
	out := make([]byte, len(b))
	for i, v := range b {
		out[len(b)-1-i] = v
	}
	return out
}
