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
	return &Curve{
		Name: "GOST R 34.10 test", OID: oidTestParamSet,
		P: hexInt("8000000000000000000000000000000000000000000000000000000000000431"),
		A: big.NewInt(7),
		B: hexInt("5FBFF498AA938CE739B8E022FBAFEF40563F6E6A3472FC2A514C0CE9DAE23B7E"),
		Q: hexInt("8000000000000000000000000000000150FE8A1892976154C59CFC193ACCF5B3"),
		X: big.NewInt(2),
		Y: hexInt("08E2A8A0E65147D4BD6316030E16D19C85C97F0A9CA267122B96ABBCEA7E8FC8"),
	}
}

// CurveCryptoProA is id-GostR3410-2001-CryptoPro-A-ParamSet (also XchA and TC26 256 B).
func CurveCryptoProA() *Curve {
	p := hexInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFD97")
	return &Curve{
		Name: "CryptoPro-A", OID: oidCryptoProA, Alias: []asn1.ObjectIdentifier{oidCryptoProXchA, oidTC26B},
		P: p, A: minus3(p), B: big.NewInt(0xA6),
		Q: hexInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFF6C611070995AD10045841B09B761B893"),
		X: big.NewInt(1),
		Y: hexInt("8D91E471E0989CDA27DF505A453F2B7635294F2DDF23E3B122ACC99C9E9F1E14"),
	}
}

// CurveCryptoProB is id-GostR3410-2001-CryptoPro-B-ParamSet (also TC26 256 C).
func CurveCryptoProB() *Curve {
	p := hexInt("8000000000000000000000000000000000000000000000000000000000000C99")
	return &Curve{
		Name: "CryptoPro-B", OID: oidCryptoProB, Alias: []asn1.ObjectIdentifier{oidTC26C},
		P: p, A: minus3(p),
		B: hexInt("3E1AF419A269A5F866A7D3C25C3DF80AE979259373FF2B182F49D4CE7E1BBC8B"),
		Q: hexInt("800000000000000000000000000000015F700CFFF1A624E5E497161BCC8A198F"),
		X: big.NewInt(1),
		Y: hexInt("3FA8124359F96680B83D1C3EB2C070E5C545C9858D03ECFB744BF8D717717EFC"),
	}
}

// CurveCryptoProC is id-GostR3410-2001-CryptoPro-C-ParamSet (also XchB and TC26 256 D).
func CurveCryptoProC() *Curve {
	p := hexInt("9B9F605F5A858107AB1EC85E6B41C8AACF846E86789051D37998F7B9022D759B")
	return &Curve{
		Name: "CryptoPro-C", OID: oidCryptoProC, Alias: []asn1.ObjectIdentifier{oidCryptoProXchB, oidTC26D},
		P: p, A: minus3(p), B: big.NewInt(0x805A),
		Q: hexInt("9B9F605F5A858107AB1EC85E6B41C8AA582CA3511EDDFB74F02F3A6598980BB9"),
		X: big.NewInt(0),
		Y: hexInt("41ECE55743711A8C3CBF3783CD08C0EE4D4DC440D4641A8F366E550DFDB3BB67"),
	}
}

// CurveTC26A is id-tc26-gost-3410-2012-256-paramSetA, in Weierstrass form.
func CurveTC26A() *Curve {
	return &Curve{
		Name: "TC26-256-A", OID: oidTC26A,
		P: hexInt("FFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFD97"),
		A: hexInt("C2173F1513981673AF4892C23035A27CE25E2013BF95AA33B22C656F277E7335"),
		B: hexInt("295F9BAE7428ED9CCC20E7C359A9D41A22FCCD9108E17BF7BA9337A6F8AE9513"),
		Q: hexInt("400000000000000000000000000000000FD8CDDFC87B6635C115AF556C360C67"),
		X: hexInt("91E38443A5E82C0D880923425712B2BB658B9196932E02C78B2582FE742DAA28"),
		Y: hexInt("32879423AB1A0375895786C4BB46E9565FDE0B5344766740AF268ADB32322E5C"),
	}
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

// point is a point in Jacobian coordinates; Z = 0 is the point at infinity.
type point struct{ x, y, z *big.Int }

func (c *Curve) mod(v *big.Int) *big.Int { return v.Mod(v, c.P) }

func (c *Curve) double(p point) point {
	if p.z.Sign() == 0 || p.y.Sign() == 0 {
		return point{new(big.Int), new(big.Int), new(big.Int)}
	}
	yy := c.mod(new(big.Int).Mul(p.y, p.y))
	s := c.mod(new(big.Int).Mul(p.x, yy))
	s.Lsh(s, 2)
	c.mod(s)
	zz := c.mod(new(big.Int).Mul(p.z, p.z))
	m := c.mod(new(big.Int).Mul(p.x, p.x))
	m.Mul(m, big.NewInt(3))
	az4 := c.mod(new(big.Int).Mul(zz, zz))
	az4.Mul(az4, c.A)
	m.Add(m, az4)
	c.mod(m)
	x3 := c.mod(new(big.Int).Mul(m, m))
	x3.Sub(x3, new(big.Int).Lsh(s, 1))
	c.mod(x3)
	y4 := c.mod(new(big.Int).Mul(yy, yy))
	y3 := new(big.Int).Sub(s, x3)
	y3.Mul(y3, m)
	y3.Sub(y3, y4.Lsh(y4, 3))
	c.mod(y3)
	z3 := c.mod(new(big.Int).Mul(p.y, p.z))
	z3.Lsh(z3, 1)
	c.mod(z3)
	return point{x3, y3, z3}
}

func (c *Curve) add(p, q point) point {
	if p.z.Sign() == 0 {
		return q
	}
	if q.z.Sign() == 0 {
		return p
	}
	z1z1 := c.mod(new(big.Int).Mul(p.z, p.z))
	z2z2 := c.mod(new(big.Int).Mul(q.z, q.z))
	u1 := c.mod(new(big.Int).Mul(p.x, z2z2))
	u2 := c.mod(new(big.Int).Mul(q.x, z1z1))
	s1 := c.mod(new(big.Int).Mul(p.y, c.mod(new(big.Int).Mul(z2z2, q.z))))
	s2 := c.mod(new(big.Int).Mul(q.y, c.mod(new(big.Int).Mul(z1z1, p.z))))
	if u1.Cmp(u2) == 0 {
		if s1.Cmp(s2) != 0 {
			return point{new(big.Int), new(big.Int), new(big.Int)}
		}
		return c.double(p)
	}
	h := c.mod(new(big.Int).Sub(u2, u1))
	r := c.mod(new(big.Int).Sub(s2, s1))
	hh := c.mod(new(big.Int).Mul(h, h))
	hhh := c.mod(new(big.Int).Mul(hh, h))
	u1hh := c.mod(new(big.Int).Mul(u1, hh))
	x3 := c.mod(new(big.Int).Mul(r, r))
	x3.Sub(x3, hhh)
	x3.Sub(x3, new(big.Int).Lsh(u1hh, 1))
	c.mod(x3)
	y3 := new(big.Int).Sub(u1hh, x3)
	y3.Mul(y3, r)
	y3.Sub(y3, new(big.Int).Mul(s1, hhh))
	c.mod(y3)
	z3 := c.mod(new(big.Int).Mul(p.z, q.z))
	z3.Mul(z3, h)
	c.mod(z3)
	return point{x3, y3, z3}
}

func (c *Curve) affine(p point) (x, y *big.Int, ok bool) {
	if p.z.Sign() == 0 {
		return nil, nil, false
	}
	zinv := new(big.Int).ModInverse(p.z, c.P)
	zinv2 := c.mod(new(big.Int).Mul(zinv, zinv))
	x = c.mod(new(big.Int).Mul(p.x, zinv2))
	y = c.mod(new(big.Int).Mul(p.y, c.mod(new(big.Int).Mul(zinv2, zinv))))
	return x, y, true
}

// scalarMult returns k·(x, y) in Jacobian coordinates (left-to-right double-and-add).
func (c *Curve) scalarMult(x, y, k *big.Int) point {
	r := point{new(big.Int), new(big.Int), new(big.Int)}
	base := point{new(big.Int).Set(x), new(big.Int).Set(y), big.NewInt(1)}
	for i := k.BitLen() - 1; i >= 0; i-- {
		r = c.double(r)
		if k.Bit(i) == 1 {
			r = c.add(r, base)
		}
	}
	return r
}

// IsOnCurve tells whether (x, y) satisfies the curve equation.
func (c *Curve) IsOnCurve(x, y *big.Int) bool {
	if x.Sign() < 0 || x.Cmp(c.P) >= 0 || y.Sign() < 0 || y.Cmp(c.P) >= 0 {
		return false
	}
	lhs := c.mod(new(big.Int).Mul(y, y))
	rhs := new(big.Int).Mul(x, x)
	rhs.Mul(rhs, x)
	rhs.Add(rhs, new(big.Int).Mul(c.A, x))
	rhs.Add(rhs, c.B)
	c.mod(rhs)
	return lhs.Cmp(rhs) == 0
}
