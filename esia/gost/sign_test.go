package gost

import (
	"crypto/rand"
	"math/big"
	"testing"
)

func TestCurvesAreConsistent(t *testing.T) {
	for _, c := range append(Curves(), CurveTest()) {
		t.Run(c.Name, func(t *testing.T) {
			if !c.IsOnCurve(c.X, c.Y) {
				t.Fatal("base point is not on the curve")
			}
			if !c.P.ProbablyPrime(20) || !c.Q.ProbablyPrime(20) {
				t.Fatal("p or q is not prime")
			}
			if _, _, ok := c.affine(c.scalarMult(c.X, c.Y, c.Q)); ok {
				t.Fatal("q·G is not the point at infinity")
			}
			qm1 := new(big.Int).Sub(c.Q, big.NewInt(1))
			x, y, ok := c.affine(c.scalarMult(c.X, c.Y, qm1))
			if !ok || x.Cmp(c.X) != 0 || new(big.Int).Add(y, c.Y).Cmp(c.P) != 0 {
				t.Fatal("(q-1)·G is not -G")
			}
		})
	}
}

// TestRFC7091Example is the signature example of GOST R 34.10-2012 (RFC 7091 §A.1).
func TestRFC7091Example(t *testing.T) {
	c := CurveTest()
	k, err := NewPrivateKey(c, hexInt("7A929ADE789BB9BE10ED359DD39A72C11B60961F49397EEE1D19CE9891EC3B28"))
	if err != nil {
		t.Fatal(err)
	}
	if k.X.Cmp(hexInt("7F2B49E270DB6D90D8595BEC458B50C58585BA1D4E9B788F6689DBD8E56FD80B")) != 0 ||
		k.Y.Cmp(hexInt("26F1B489D6701DD185C8413A977B3CBBAF64D1C593D26627DFFB101A87FF77DA")) != 0 {
		t.Fatalf("public key = (%X, %X)", k.X, k.Y)
	}
	e := hexInt("2DFBC1B372D89A1188C09C52E0EEC61FCE52032AB1022E8E67ECE6672B043EE5")
	nonce := hexInt("77105C9B20BCD3122823C8CF6FCC7B956DE33814E95B7FE64FED924594DCEAB3")
	r, s, ok := k.signWithNonce(e, nonce)
	if !ok {
		t.Fatal("sign failed")
	}
	if r.Cmp(hexInt("41AA28D2F1AB148280CD9ED56FEDA41974053554A42767B83AD043FD39DC0493")) != 0 ||
		s.Cmp(hexInt("01456C64BA4642A1653C235A98A60249BCD6D3F746B631DF928014F6C5BF9C40")) != 0 {
		t.Fatalf("r = %X\ns = %X", r, s)
	}
	// Verify takes a digest; the example gives e, so feed the little-endian bytes of e.
	digest := ReverseBytes(e.FillBytes(make([]byte, 32)))
	if !k.PublicKey.Verify(digest, encodeSignature(r, s)) {
		t.Error("the example signature does not verify")
	}
}

func TestSignVerifyEveryCurve(t *testing.T) {
	for _, c := range Curves() {
		t.Run(c.Name, func(t *testing.T) {
			k, err := GenerateKey(c, rand.Reader)
			if err != nil {
				t.Fatal(err)
			}
			msg := []byte("client_id" + "openid fullname" + "2026.11.22 14:00:00 +0300" + "state")
			sig, err := k.SignMessage(rand.Reader, msg)
			if err != nil || len(sig) != 64 {
				t.Fatalf("sign: %v", err)
			}
			sig2, _ := k.SignMessage(rand.Reader, msg)
			if string(sig) == string(sig2) {
				t.Error("two signatures are equal: the nonce is not fresh")
			}
			if !k.VerifyMessage(msg, sig) {
				t.Fatal("own signature does not verify")
			}
			if k.VerifyMessage(append(msg, 'x'), sig) {
				t.Error("signature verifies for another message")
			}
			bad := append([]byte(nil), sig...)
			bad[10] ^= 1
			if k.VerifyMessage(msg, bad) {
				t.Error("a changed signature verifies")
			}
			if k.VerifyMessage(msg, ReverseBytes(sig)) {
				t.Error("a byte-reversed signature verifies")
			}
			if k.VerifyMessage(msg, make([]byte, 64)) || k.VerifyMessage(msg, sig[:63]) {
				t.Error("a zero or short signature verifies")
			}
		})
	}
}

func BenchmarkSign(b *testing.B) {
	k, _ := GenerateKey(CurveCryptoProA(), rand.Reader)
	msg := []byte("esia client secret message")
	for b.Loop() {
		if _, err := k.SignMessage(rand.Reader, msg); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkVerify(b *testing.B) {
	k, _ := GenerateKey(CurveCryptoProA(), rand.Reader)
	msg := []byte("esia client secret message")
	sig, _ := k.SignMessage(rand.Reader, msg)
	for b.Loop() {
		if !k.VerifyMessage(msg, sig) {
			b.Fatal("verify")
		}
	}
}

func BenchmarkStreebog256(b *testing.B) {
	msg := make([]byte, 1024)
	b.SetBytes(1024)
	for b.Loop() {
		Sum256(msg)
	}
}

func TestFixedBaseMatchesLadder(t *testing.T) {
	for _, c := range append(Curves(), CurveTest()) {
		f := newFixedBase(c, c.X, c.Y)
		for i := range 20 {
			k, _ := rand.Int(rand.Reader, c.Q)
			if i == 0 {
				k = big.NewInt(1)
			}
			if i == 1 {
				k = new(big.Int).Sub(c.Q, big.NewInt(1))
			}
			x1, y1, ok1 := c.affine(f.mult(k))
			x2, y2, ok2 := c.affine(c.scalarMult(c.X, c.Y, k))
			if ok1 != ok2 || x1.Cmp(x2) != 0 || y1.Cmp(y2) != 0 {
				t.Fatalf("%s: table and ladder differ for k=%X", c.Name, k)
			}
		}
	}
}

func TestPrecomputedVerify(t *testing.T) {
	k, _ := GenerateKey(CurveCryptoProA(), rand.Reader)
	msg := []byte("esia token")
	sig, _ := k.SignMessage(rand.Reader, msg)
	pub := &k.PublicKey
	pub.Precompute()
	if !pub.VerifyMessage(msg, sig) || pub.VerifyMessage(append(msg, '!'), sig) {
		t.Error("precomputed verification is wrong")
	}
}

func BenchmarkVerifyPrecomputed(b *testing.B) {
	k, _ := GenerateKey(CurveCryptoProA(), rand.Reader)
	msg := []byte("esia client secret message")
	sig, _ := k.SignMessage(rand.Reader, msg)
	k.PublicKey.Precompute()
	for b.Loop() {
		if !k.VerifyMessage(msg, sig) {
			b.Fatal("verify")
		}
	}
}

func TestKeyWithoutTablesStillWorks(t *testing.T) {
	k, _ := GenerateKey(CurveCryptoProB(), rand.Reader)
	bare := &PrivateKey{PublicKey: PublicKey{Curve: k.Curve, X: k.X, Y: k.Y}, D: k.D}
	msg := []byte("m")
	sig, err := bare.SignMessage(rand.Reader, msg)
	if err != nil || !k.VerifyMessage(msg, sig) || !bare.VerifyMessage(msg, sig) {
		t.Errorf("a key literal without tables: %v", err)
	}
	bare.Precompute()
}
