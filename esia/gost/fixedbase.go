package gost

import (
	"math/big"
	"sync"
	"sync/atomic"
)

// fixedBase holds multiples of one point so that k·P costs 64 mixed additions and no
// doublings: tab[i][j] = j·16^i·P in affine coordinates (j = 0 unused).
type fixedBase struct {
	c   *Curve
	tab [64][16]affinePoint
}

func newFixedBase(c *Curve, x, y *big.Int) *fixedBase {
	f := &fixedBase{c: c}
	base := c.enterPoint(x, y)
	for i := range 64 {
		var acc point
		for j := 1; j < 16; j++ {
			acc = c.addAffine(acc, &base)
			f.tab[i][j] = c.toAffine(acc)
		}
		b := c.addAffine(point{}, &base)
		for range 4 {
			b = c.double(b)
		}
		base = c.toAffine(b)
	}
	return f
}

// mult returns k·P for 0 ≤ k < 2^256.
func (f *fixedBase) mult(k *big.Int) point {
	var r point
	words := k.Bits()
	for i := range 64 {
		bit := 4 * i
		w := bit / (8 * wordBytes)
		if w >= len(words) {
			break
		}
		nib := (uint64(words[w]) >> (uint(bit) % (8 * wordBytes))) & 15
		if nib != 0 {
			r = f.c.addAffine(r, &f.tab[i][nib])
		}
	}
	return r
}

const wordBytes = 8 // big.Word on the 64-bit platforms the broker runs on

// tables are the lazily built fixed-base tables of a key: the curve's base point (signing and
// verification) and, when asked for, the public point itself (a verifier that checks many
// signatures of one key, such as ESIA's).
type keyTables struct {
	gOnce, qOnce sync.Once
	g            *fixedBase
	q            atomic.Pointer[fixedBase]
}

// baseMult is k·G: through the key's table, or the ladder for a key made without one.
func (p *PublicKey) baseMult(k *big.Int) point {
	if p.tab == nil {
		return p.Curve.scalarMult(p.Curve.X, p.Curve.Y, k)
	}
	p.tab.gOnce.Do(func() { p.tab.g = newFixedBase(p.Curve, p.Curve.X, p.Curve.Y) })
	return p.tab.g.mult(k)
}

// pointMult is k·Q for the key's own point.
func (p *PublicKey) pointMult(k *big.Int) point {
	if p.tab != nil {
		if q := p.tab.q.Load(); q != nil {
			return q.mult(k)
		}
	}
	return p.Curve.scalarMult(p.X, p.Y, k)
}

// Precompute builds the table of the public point, making later Verify calls several times
// faster; worth it for a key that verifies many signatures.
func (p *PublicKey) Precompute() {
	if p.tab == nil {
		return
	}
	p.tab.qOnce.Do(func() { p.tab.q.Store(newFixedBase(p.Curve, p.X, p.Y)) })
}
