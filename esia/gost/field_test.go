package gost

import (
	"crypto/rand"
	"math/big"
	"testing"
)

// TestFieldAgainstBig checks the Montgomery arithmetic against math/big on every curve's prime,
// with the edge values (0, 1, p-1, p-2, 2^255 mod p) and random elements.
func TestFieldAgainstBig(t *testing.T) {
	for _, c := range append(Curves(), CurveTest()) {
		t.Run(c.Name, func(t *testing.T) {
			p := c.P
			f := newField(p)
			vals := []*big.Int{big.NewInt(0), big.NewInt(1), big.NewInt(2),
				new(big.Int).Sub(p, big.NewInt(1)), new(big.Int).Sub(p, big.NewInt(2)),
				new(big.Int).Mod(new(big.Int).Lsh(big.NewInt(1), 255), p)}
			for range 200 {
				v, err := rand.Int(rand.Reader, p)
				if err != nil {
					t.Fatal(err)
				}
				vals = append(vals, v)
			}
			mod := func(v *big.Int) *big.Int { return v.Mod(v, p) }
			for i, x := range vals {
				y := vals[(i*7+3)%len(vals)]
				fx, fy := f.enter(x), f.enter(y)
				if got := f.leave(&fx); got.Cmp(x) != 0 {
					t.Fatalf("round trip of %x gave %x", x, got)
				}
				var z fe
				checks := []struct {
					name string
					do   func()
					want *big.Int
				}{
					{"mul", func() { f.mul(&z, &fx, &fy) }, mod(new(big.Int).Mul(x, y))},
					{"sqr", func() { f.sqr(&z, &fx) }, mod(new(big.Int).Mul(x, x))},
					{"add", func() { f.add(&z, &fx, &fy) }, mod(new(big.Int).Add(x, y))},
					{"sub", func() { f.sub(&z, &fx, &fy) }, mod(new(big.Int).Sub(x, y))},
				}
				if x.Sign() != 0 {
					checks = append(checks, struct {
						name string
						do   func()
						want *big.Int
					}{"inv", func() { f.inv(&z, &fx) }, new(big.Int).ModInverse(x, p)})
				}
				for _, ch := range checks {
					ch.do()
					if got := f.leave(&z); got.Cmp(ch.want) != 0 {
						t.Fatalf("%s(%x, %x) = %x, want %x", ch.name, x, y, got, ch.want)
					}
					if z.geq(&f.p) {
						t.Fatalf("%s(%x, %x) left an unreduced result", ch.name, x, y)
					}
				}
			}
			// Entering values at or above p reduces them.
			big2 := new(big.Int).Add(p, big.NewInt(5))
			e := f.enter(big2)
			if got := f.leave(&e); got.Int64() != 5 {
				t.Fatalf("enter(p+5) = %x, want 5", got)
			}
			neg := f.enter(big.NewInt(-1))
			if got := f.leave(&neg); got.Cmp(new(big.Int).Sub(p, big.NewInt(1))) != 0 {
				t.Fatalf("enter(-1) = %x, want p-1", got)
			}
		})
	}
}

// TestPointArithmetic checks the group law on each curve: P+P = 2P, P+(-P) = O, (a+b)·G =
// a·G + b·G through general, mixed and table paths.
func TestPointArithmetic(t *testing.T) {
	for _, c := range append(Curves(), CurveTest()) {
		t.Run(c.Name, func(t *testing.T) {
			g := c.enterPoint(c.X, c.Y)
			gj := c.addAffine(point{}, &g)
			if !samePoint(c, c.add(gj, gj), c.double(gj)) {
				t.Fatal("G+G != 2G")
			}
			if !samePoint(c, c.addAffine(gj, &g), c.double(gj)) {
				t.Fatal("mixed G+G != 2G")
			}
			negY := new(big.Int).Sub(c.P, c.Y)
			ng := c.enterPoint(c.X, negY)
			if r := c.addAffine(gj, &ng); !r.z.isZero() {
				t.Fatal("G + (-G) is not the point at infinity")
			}
			tab := newFixedBase(c, c.X, c.Y)
			for range 20 {
				a, _ := rand.Int(rand.Reader, c.Q)
				b, _ := rand.Int(rand.Reader, c.Q)
				sum := new(big.Int).Add(a, b)
				sum.Mod(sum, c.Q)
				want := c.scalarMult(c.X, c.Y, sum)
				if !samePoint(c, c.add(tab.mult(a), c.scalarMult(c.X, c.Y, b)), want) {
					t.Fatalf("(a+b)G != aG + bG for a=%x b=%x", a, b)
				}
			}
		})
	}
}

func samePoint(c *Curve, p, q point) bool {
	px, py, ok1 := c.affine(p)
	qx, qy, ok2 := c.affine(q)
	if !ok1 || !ok2 {
		return ok1 == ok2
	}
	return px.Cmp(qx) == 0 && py.Cmp(qy) == 0
}
