package gost

import (
	"encoding/asn1"
	"math/big"
)

// Curve is a GOST R 34.10 elliptic curve y² = x³ + ax + b over GF(p) with a base point of
// prime order q.
type Curve struct {
	Name  string
	OID   asn1.ObjectIdentifier
	P     *big.Int
	A     *big.Int
	B     *big.Int
	Q     *big.Int
	X, Y  *big.Int
	Alias []asn1.ObjectIdentifier // other parameter-set OIDs naming the same curve

	arith *arith
}

func hexInt(s string) *big.Int {
	n, ok := new(big.Int).SetString(s, 16)
	if !ok {
		panic("gost: bad curve constant " + s)
	}
	return n
}

func minus3(p *big.Int) *big.Int { return new(big.Int).Sub(p, big.NewInt(3)) }

// The OIDs of GOST keys and algorithms.
var (
	OIDPublicKey256      = asn1.ObjectIdentifier{1, 2, 643, 7, 1, 1, 1, 1}
	OIDDigest256         = asn1.ObjectIdentifier{1, 2, 643, 7, 1, 1, 2, 2}
	OIDSignWithDigest256 = asn1.ObjectIdentifier{1, 2, 643, 7, 1, 1, 3, 2}
	oidCryptoProA        = asn1.ObjectIdentifier{1, 2, 643, 2, 2, 35, 1}
	oidCryptoProB        = asn1.ObjectIdentifier{1, 2, 643, 2, 2, 35, 2}
	oidCryptoProC        = asn1.ObjectIdentifier{1, 2, 643, 2, 2, 35, 3}
	oidCryptoProXchA     = asn1.ObjectIdentifier{1, 2, 643, 2, 2, 36, 0}
	oidCryptoProXchB     = asn1.ObjectIdentifier{1, 2, 643, 2, 2, 36, 1}
	oidTC26A             = asn1.ObjectIdentifier{1, 2, 643, 7, 1, 2, 1, 1, 1}
	oidTC26B             = asn1.ObjectIdentifier{1, 2, 643, 7, 1, 2, 1, 1, 2}
	oidTC26C             = asn1.ObjectIdentifier{1, 2, 643, 7, 1, 2, 1, 1, 3}
	oidTC26D             = asn1.ObjectIdentifier{1, 2, 643, 7, 1, 2, 1, 1, 4}
	oidTestParamSet      = asn1.ObjectIdentifier{1, 2, 643, 2, 2, 35, 0}
)

// CurveTest is the curve of the examples in GOST R 34.10-2012 and RFC 7091.
func CurveTest() *Curve {
	return withArith(&Curve{
		Name: "GOST R 34.10 test", OID: oidTestParamSet,
		P: hexInt("8000000000000000000000000000000000000000000000000000000000000431"),
		A: big.NewInt(7),
		B: hexInt("5FBFF498AA938CE739B8E022FBAFEF40563F6E6A3472FC2A514C0CE9DAE23B7E"),
		Q: hexInt("8000000000000000000000000000000150FE8A1892976154C59CFC193ACCF5B3"),
		X: big.NewInt(2),
		Y: hexInt("08E2A8A0E65147D4BD6316030E16D19C85C97F0A9CA267122B96ABBCEA7E8FC8"),
	})
}

// CurveCryptoProA is id-GostR3410-2001-CryptoPro-A-ParamSet (also XchA and TC26 256 B).
func CurveCryptoProA() *Curve {
	p := hexInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFD97")
	return withArith(&Curve{
		Name: "CryptoPro-A", OID: oidCryptoProA, Alias: []asn1.ObjectIdentifier{oidCryptoProXchA, oidTC26B},
		P: p, A: minus3(p), B: big.NewInt(0xA6),
		Q: hexInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF6C611070995AD10045841B09B761B893"),
		X: big.NewInt(1),
		Y: hexInt("8D91E471E0989CDA27DF505A453F2B7635294F2DDF23E3B122ACC99C9E9F1E14"),
	})
}

// CurveCryptoProB is id-GostR3410-2001-CryptoPro-B-ParamSet (also TC26 256 C).
func CurveCryptoProB() *Curve {
	p := hexInt("8000000000000000000000000000000000000000000000000000000000000C99")
	return withArith(&Curve{
		Name: "CryptoPro-B", OID: oidCryptoProB, Alias: []asn1.ObjectIdentifier{oidTC26C},
		P: p, A: minus3(p),
		B: hexInt("3E1AF419A269A5F866A7D3C25C3DF80AE979259373FF2B182F49D4CE7E1BBC8B"),
		Q: hexInt("800000000000000000000000000000015F700CFFF1A624E5E497161BCC8A198F"),
		X: big.NewInt(1),
		Y: hexInt("3FA8124359F96680B83D1C3EB2C070E5C545C9858D03ECFB744BF8D717717EFC"),
	})
}

// CurveCryptoProC is id-GostR3410-2001-CryptoPro-C-ParamSet (also XchB and TC26 256 D).
func CurveCryptoProC() *Curve {
	p := hexInt("9B9F605F5A858107AB1EC85E6B41C8AACF846E86789051D37998F7B9022D759B")
	return withArith(&Curve{
		Name: "CryptoPro-C", OID: oidCryptoProC, Alias: []asn1.ObjectIdentifier{oidCryptoProXchB, oidTC26D},
		P: p, A: minus3(p), B: big.NewInt(0x805A),
		Q: hexInt("9B9F605F5A858107AB1EC85E6B41C8AA582CA3511EDDFB74F02F3A6598980BB9"),
		X: big.NewInt(0),
		Y: hexInt("41ECE55743711A8C3CBF3783CD08C0EE4D4DC440D4641A8F366E550DFDB3BB67"),
	})
}

// CurveTC26A is id-tc26-gost-3410-2012-256-paramSetA, in Weierstrass form.
func CurveTC26A() *Curve {
	return withArith(&Curve{
		Name: "TC26-256-A", OID: oidTC26A,
		P: hexInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFD97"),
		A: hexInt("C2173F1513981673AF4892C23035A27CE25E2013BF95AA33B22C656F277E7335"),
		B: hexInt("295F9BAE7428ED9CCC20E7C359A9D41A22FCCD9108E17BF7BA9337A6F8AE9513"),
		Q: hexInt("400000000000000000000000000000000FD8CDDFC87B6635C115AF556C360C67"),
		X: hexInt("91E38443A5E82C0D880923425712B2BB658B9196932E02C78B2582FE742DAA28"),
		Y: hexInt("32879423AB1A0375895786C4BB46E9565FDE0B5344766740AF268ADB32322E5C"),
	})
}

// Curves lists every supported 256-bit parameter set.
func Curves() []*Curve {
	return []*Curve{CurveCryptoProA(), CurveCryptoProB(), CurveCryptoProC(), CurveTC26A()}
}

// CurveByOID finds the curve a parameter-set OID names.
func CurveByOID(oid asn1.ObjectIdentifier) (*Curve, bool) {
	for _, c := range append(Curves(), CurveTest()) {
		if c.OID.Equal(oid) {
			return c, true
		}
		for _, a := range c.Alias {
			if a.Equal(oid) {
				return c, true
			}
		}
	}
	return nil, false
}

// arith is a curve's arithmetic without math/big: its field and the coefficient a, both in
// Montgomery form.
type arith struct {
	f *field
	a fe
}

func newArith(c *Curve) *arith {
	f := newField(c.P)
	return &arith{f: f, a: f.enter(c.A)}
}

// ar is the curve's arithmetic, built when the curve was (a Curve made field by field elsewhere
// gets a fresh one at every call).
func (c *Curve) ar() *arith {
	if c.arith != nil {
		return c.arith
	}
	return newArith(c)
}

// withArith finishes a curve definition.
func withArith(c *Curve) *Curve {
	c.arith = newArith(c)
	return c
}

// point is a point in Jacobian coordinates (x/z², y/z³), Montgomery form; z = 0 is the point
// at infinity (the zero value).
type point struct{ x, y, z fe }

// affinePoint is a point with z = 1, kept in tables; inf marks the point at infinity.
type affinePoint struct {
	x, y fe
	inf  bool
}

// double is dbl-2007-bl (any a).
func (c *Curve) double(p point) point {
	if p.z.isZero() || p.y.isZero() {
		return point{}
	}
	ar := c.ar()
	f := ar.f
	var xx, yy, yyyy, zz, s, m, t, x3, y3, z3 fe
	f.sqr(&xx, &p.x)
	f.sqr(&yy, &p.y)
	f.sqr(&yyyy, &yy)
	f.sqr(&zz, &p.z)
	f.add(&s, &p.x, &yy)
	f.sqr(&s, &s)
	f.sub(&s, &s, &xx)
	f.sub(&s, &s, &yyyy)
	f.add(&s, &s, &s)
	f.add(&m, &xx, &xx)
	f.add(&m, &m, &xx)
	f.sqr(&t, &zz)
	f.mul(&t, &t, &ar.a)
	f.add(&m, &m, &t)
	f.sqr(&x3, &m)
	f.sub(&x3, &x3, &s)
	f.sub(&x3, &x3, &s)
	f.sub(&y3, &s, &x3)
	f.mul(&y3, &y3, &m)
	f.add(&t, &yyyy, &yyyy)
	f.add(&t, &t, &t)
	f.add(&t, &t, &t)
	f.sub(&y3, &y3, &t)
	f.add(&z3, &p.y, &p.z)
	f.sqr(&z3, &z3)
	f.sub(&z3, &z3, &yy)
	f.sub(&z3, &z3, &zz)
	return point{x3, y3, z3}
}

// add is add-2007-bl, with the doubling and inverse cases.
func (c *Curve) add(p, q point) point {
	if p.z.isZero() {
		return q
	}
	if q.z.isZero() {
		return p
	}
	f := c.ar().f
	var z1z1, z2z2, u1, u2, s1, s2, h, i, j, r, v, x3, y3, z3 fe
	f.sqr(&z1z1, &p.z)
	f.sqr(&z2z2, &q.z)
	f.mul(&u1, &p.x, &z2z2)
	f.mul(&u2, &q.x, &z1z1)
	f.mul(&s1, &q.z, &z2z2)
	f.mul(&s1, &s1, &p.y)
	f.mul(&s2, &p.z, &z1z1)
	f.mul(&s2, &s2, &q.y)
	f.sub(&h, &u2, &u1)
	f.sub(&r, &s2, &s1)
	if h.isZero() {
		if r.isZero() {
			return c.double(p)
		}
		return point{}
	}
	f.add(&i, &h, &h)
	f.sqr(&i, &i)
	f.mul(&j, &h, &i)
	f.add(&r, &r, &r)
	f.mul(&v, &u1, &i)
	f.sqr(&x3, &r)
	f.sub(&x3, &x3, &j)
	f.sub(&x3, &x3, &v)
	f.sub(&x3, &x3, &v)
	f.sub(&y3, &v, &x3)
	f.mul(&y3, &y3, &r)
	f.mul(&s1, &s1, &j)
	f.add(&s1, &s1, &s1)
	f.sub(&y3, &y3, &s1)
	f.add(&z3, &p.z, &q.z)
	f.sqr(&z3, &z3)
	f.sub(&z3, &z3, &z1z1)
	f.sub(&z3, &z3, &z2z2)
	f.mul(&z3, &z3, &h)
	return point{x3, y3, z3}
}

// addAffine is madd-2007-bl: p + q for q with z = 1.
func (c *Curve) addAffine(p point, q *affinePoint) point {
	if q.inf {
		return p
	}
	f := c.ar().f
	if p.z.isZero() {
		return point{q.x, q.y, f.one}
	}
	var z1z1, u2, s2, h, hh, i, j, r, v, x3, y3, z3 fe
	f.sqr(&z1z1, &p.z)
	f.mul(&u2, &q.x, &z1z1)
	f.mul(&s2, &p.z, &z1z1)
	f.mul(&s2, &s2, &q.y)
	f.sub(&h, &u2, &p.x)
	f.sub(&r, &s2, &p.y)
	if h.isZero() {
		if r.isZero() {
			return c.double(p)
		}
		return point{}
	}
	f.sqr(&hh, &h)
	f.add(&i, &hh, &hh)
	f.add(&i, &i, &i)
	f.mul(&j, &h, &i)
	f.add(&r, &r, &r)
	f.mul(&v, &p.x, &i)
	f.sqr(&x3, &r)
	f.sub(&x3, &x3, &j)
	f.sub(&x3, &x3, &v)
	f.sub(&x3, &x3, &v)
	f.sub(&y3, &v, &x3)
	f.mul(&y3, &y3, &r)
	f.mul(&j, &j, &p.y)
	f.add(&j, &j, &j)
	f.sub(&y3, &y3, &j)
	f.add(&z3, &p.z, &h)
	f.sqr(&z3, &z3)
	f.sub(&z3, &z3, &z1z1)
	f.sub(&z3, &z3, &hh)
	return point{x3, y3, z3}
}

// toAffine normalises p to z = 1, staying in Montgomery form.
func (c *Curve) toAffine(p point) affinePoint {
	if p.z.isZero() {
		return affinePoint{inf: true}
	}
	f := c.ar().f
	var zinv, zinv2, x, y fe
	f.inv(&zinv, &p.z)
	f.sqr(&zinv2, &zinv)
	f.mul(&x, &p.x, &zinv2)
	f.mul(&y, &p.y, &zinv2)
	f.mul(&y, &y, &zinv)
	return affinePoint{x: x, y: y}
}

func (c *Curve) affine(p point) (x, y *big.Int, ok bool) {
	a := c.toAffine(p)
	if a.inf {
		return nil, nil, false
	}
	f := c.ar().f
	return f.leave(&a.x), f.leave(&a.y), true
}

// enterPoint takes an affine point given as integers into Montgomery form.
func (c *Curve) enterPoint(x, y *big.Int) affinePoint {
	f := c.ar().f
	return affinePoint{x: f.enter(x), y: f.enter(y)}
}

// scalarMult returns k·(x, y) in Jacobian coordinates (left-to-right double-and-add).
func (c *Curve) scalarMult(x, y, k *big.Int) point {
	base := c.enterPoint(x, y)
	var r point
	for i := k.BitLen() - 1; i >= 0; i-- {
		r = c.double(r)
		if k.Bit(i) == 1 {
			r = c.addAffine(r, &base)
		}
	}
	return r
}

// IsOnCurve tells whether (x, y) satisfies the curve equation.
func (c *Curve) IsOnCurve(x, y *big.Int) bool {
	if x.Sign() < 0 || x.Cmp(c.P) >= 0 || y.Sign() < 0 || y.Cmp(c.P) >= 0 {
		return false
	}
	lhs := new(big.Int).Mul(y, y)
	lhs.Mod(lhs, c.P)
	rhs := new(big.Int).Mul(x, x)
	rhs.Mul(rhs, x)
	rhs.Add(rhs, new(big.Int).Mul(c.A, x))
	rhs.Add(rhs, c.B)
	rhs.Mod(rhs, c.P)
	return lhs.Cmp(rhs) == 0
}
