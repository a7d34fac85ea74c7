package gost

import (
	"math/big"
	"math/bits"
)

// fe is an element of GF(p) for a 256-bit odd prime p, in Montgomery form (x·2^256 mod p),
// little-endian 64-bit limbs, always fully reduced (< p) so that equal elements have equal limbs.
type fe [4]uint64

// field is the Montgomery arithmetic of one prime p < 2^256. It replaces math/big in the point
// arithmetic: no allocations, and a multiplication is a few dozen machine instructions.
type field struct {
	p   fe     // the modulus (plain, not Montgomery)
	n0  uint64 // -p⁻¹ mod 2^64
	r2  fe     // 2^512 mod p (plain), to enter Montgomery form
	one fe     // 2^256 mod p: 1 in Montgomery form
}

func newField(p *big.Int) *field {
	f := &field{p: feFromBig(p)}
	inv := uint64(1) // Newton's iteration for p⁻¹ mod 2^64: each step doubles the correct bits
	for range 6 {
		inv *= 2 - f.p[0]*inv
	}
	f.n0 = -inv
	r := new(big.Int).Lsh(big.NewInt(1), 256)
	f.one = feFromBig(new(big.Int).Mod(r, p))
	f.r2 = feFromBig(new(big.Int).Mod(new(big.Int).Mul(r, r), p))
	return f
}

// feFromBig reads a non-negative integer below 2^256 into limbs (no reduction, no conversion).
func feFromBig(v *big.Int) fe {
	var b [32]byte
	v.FillBytes(b[:])
	var z fe
	for i := range 4 {
		for j := range 8 {
			z[i] |= uint64(b[31-8*i-j]) << (8 * j)
		}
	}
	return z
}

func (z *fe) toBig() *big.Int {
	var b [32]byte
	for i := range 4 {
		for j := range 8 {
			b[31-8*i-j] = byte(z[i] >> (8 * j))
		}
	}
	return new(big.Int).SetBytes(b[:])
}

func (z *fe) isZero() bool { return z[0]|z[1]|z[2]|z[3] == 0 }

// enter converts v (0 ≤ v) into Montgomery form, reducing it mod p first.
func (f *field) enter(v *big.Int) fe {
	if v.Sign() < 0 || v.BitLen() > 256 {
		v = new(big.Int).Mod(v, f.p.toBig())
	}
	z := feFromBig(v)
	if z.geq(&f.p) {
		z = feFromBig(new(big.Int).Mod(v, f.p.toBig()))
	}
	f.mul(&z, &z, &f.r2)
	return z
}

// leave converts out of Montgomery form.
func (f *field) leave(x *fe) *big.Int {
	z := fe{1}
	f.mul(&z, x, &z)
	return z.toBig()
}

// geq tells whether z ≥ y as integers.
func (z *fe) geq(y *fe) bool {
	_, b := bits.Sub64(z[0], y[0], 0)
	_, b = bits.Sub64(z[1], y[1], b)
	_, b = bits.Sub64(z[2], y[2], b)
	_, b = bits.Sub64(z[3], y[3], b)
	return b == 0
}

// reduceOnce returns t - p when the 257-bit value (t, hi) is at least p, else t.
func (f *field) reduceOnce(z *fe, t *fe, hi uint64) {
	var r fe
	var b uint64
	r[0], b = bits.Sub64(t[0], f.p[0], 0)
	r[1], b = bits.Sub64(t[1], f.p[1], b)
	r[2], b = bits.Sub64(t[2], f.p[2], b)
	r[3], b = bits.Sub64(t[3], f.p[3], b)
	_, b = bits.Sub64(hi, 0, b)
	keep := -b // all ones when t < p: keep t
	for i := range 4 {
		z[i] = t[i]&keep | r[i]&^keep
	}
}

// mul sets z = x·y·2^-256 mod p (CIOS Montgomery multiplication). z may alias x or y.
func (f *field) mul(z, x, y *fe) {
	var t0, t1, t2, t3, t4, t5 uint64
	for i := range 4 {
		yi := y[i]
		var c, hi, lo, cc uint64
		hi, lo = bits.Mul64(x[0], yi)
		t0, cc = bits.Add64(lo, t0, 0)
		c = hi + cc
		hi, lo = bits.Mul64(x[1], yi)
		lo, cc = bits.Add64(lo, t1, 0)
		hi += cc
		t1, cc = bits.Add64(lo, c, 0)
		c = hi + cc
		hi, lo = bits.Mul64(x[2], yi)
		lo, cc = bits.Add64(lo, t2, 0)
		hi += cc
		t2, cc = bits.Add64(lo, c, 0)
		c = hi + cc
		hi, lo = bits.Mul64(x[3], yi)
		lo, cc = bits.Add64(lo, t3, 0)
		hi += cc
		t3, cc = bits.Add64(lo, c, 0)
		c = hi + cc
		t4, cc = bits.Add64(t4, c, 0)
		t5 = cc

		m := t0 * f.n0
		hi, lo = bits.Mul64(m, f.p[0])
		_, cc = bits.Add64(lo, t0, 0)
		c = hi + cc
		hi, lo = bits.Mul64(m, f.p[1])
		lo, cc = bits.Add64(lo, t1, 0)
		hi += cc
		t0, cc = bits.Add64(lo, c, 0)
		c = hi + cc
		hi, lo = bits.Mul64(m, f.p[2])
		lo, cc = bits.Add64(lo, t2, 0)
		hi += cc
		t1, cc = bits.Add64(lo, c, 0)
		c = hi + cc
		hi, lo = bits.Mul64(m, f.p[3])
		lo, cc = bits.Add64(lo, t3, 0)
		hi += cc
		t2, cc = bits.Add64(lo, c, 0)
		c = hi + cc
		t3, cc = bits.Add64(t4, c, 0)
		t4 = t5 + cc
	}
	f.reduceOnce(z, &fe{t0, t1, t2, t3}, t4)
}

func (f *field) sqr(z, x *fe) { f.mul(z, x, x) }

// add sets z = x + y mod p.
func (f *field) add(z, x, y *fe) {
	var t fe
	var c uint64
	t[0], c = bits.Add64(x[0], y[0], 0)
	t[1], c = bits.Add64(x[1], y[1], c)
	t[2], c = bits.Add64(x[2], y[2], c)
	t[3], c = bits.Add64(x[3], y[3], c)
	f.reduceOnce(z, &t, c)
}

// sub sets z = x - y mod p.
func (f *field) sub(z, x, y *fe) {
	var t fe
	var b uint64
	t[0], b = bits.Sub64(x[0], y[0], 0)
	t[1], b = bits.Sub64(x[1], y[1], b)
	t[2], b = bits.Sub64(x[2], y[2], b)
	t[3], b = bits.Sub64(x[3], y[3], b)
	mask := -b // add p back when the subtraction borrowed
	var c uint64
	z[0], c = bits.Add64(t[0], f.p[0]&mask, 0)
	z[1], c = bits.Add64(t[1], f.p[1]&mask, c)
	z[2], c = bits.Add64(t[2], f.p[2]&mask, c)
	z[3], _ = bits.Add64(t[3], f.p[3]&mask, c)
}

// inv sets z = x⁻¹ mod p (x ≠ 0). math/big's extended Euclid is several times faster than
// Fermat's x^(p-2) in these limbs; neither is constant-time here (see the package note).
func (f *field) inv(z, x *fe) {
	v := f.leave(x)
	v.ModInverse(v, f.p.toBig())
	*z = f.enter(v)
}
