// Package gost implements the Russian GOST cryptography ESIA requires: the Streebog hash
// (GOST R 34.11-2012, RFC 6986) and 256-bit GOST R 34.10-2012 signatures (RFC 7091), with the
// key and certificate formats OpenSSL's gost engine writes. It imports nothing of the project.
//
// The elliptic-curve code (Montgomery arithmetic on 64-bit limbs, math/big for inversion and
// the scalar arithmetic mod q) is not constant-time: table lookups and additions depend on
// the nonce's digits. The signing key never leaves
// the process and nonces are fresh per signature, but hosts where timing side channels matter
// should sign through an HSM via an external signer.
package gost

import (
	"encoding/binary"
	"hash"
)

// Size256 and Size512 are the digest sizes of Streebog-256 and Streebog-512; BlockSize is the
// block size of both.
const (
	Size256   = 32
	Size512   = 64
	BlockSize = 64
)

// pi is the substitution π of RFC 6986 §5.1.
var pi = [256]byte{
	252, 238, 221, 17, 207, 110, 49, 22, 251, 196, 250, 218, 35, 197, 4, 77,
	233, 119, 240, 219, 147, 46, 153, 186, 23, 54, 241, 187, 20, 205, 95, 193,
	249, 24, 101, 90, 226, 92, 239, 33, 129, 28, 60, 66, 139, 1, 142, 79,
	5, 132, 2, 174, 227, 106, 143, 160, 6, 11, 237, 152, 127, 212, 211, 31,
	235, 52, 44, 81, 234, 200, 72, 171, 242, 42, 104, 162, 253, 58, 206, 204,
	181, 112, 14, 86, 8, 12, 118, 18, 191, 114, 19, 71, 156, 183, 93, 135,
	21, 161, 150, 41, 16, 123, 154, 199, 243, 145, 120, 111, 157, 158, 178, 177,
	50, 117, 25, 61, 255, 53, 138, 126, 109, 84, 198, 128, 195, 189, 13, 87,
	223, 245, 36, 169, 62, 168, 67, 201, 215, 121, 214, 246, 124, 34, 185, 3,
	224, 15, 236, 222, 122, 148, 176, 188, 220, 232, 40, 80, 78, 51, 10, 74,
	167, 151, 96, 115, 30, 0, 98, 68, 26, 184, 56, 130, 100, 159, 38, 65,
	173, 69, 70, 146, 39, 94, 85, 47, 140, 163, 165, 125, 105, 213, 149, 59,
	7, 88, 179, 64, 134, 172, 29, 247, 48, 55, 107, 228, 136, 217, 231, 137,
	225, 27, 131, 73, 76, 63, 248, 254, 141, 83, 170, 144, 202, 216, 133, 97,
	32, 113, 103, 164, 45, 43, 9, 91, 203, 155, 37, 208, 190, 229, 108, 82,
	89, 166, 116, 210, 230, 244, 180, 192, 209, 102, 175, 194, 57, 75, 99, 182,
}

// matrixA is the linear transformation l of RFC 6986 §5.4, row 0 for the most significant bit.
var matrixA = [64]uint64{
	0x8e20faa72ba0b470, 0x47107ddd9b505a38, 0xad08b0e0c3282d1c, 0xd8045870ef14980e,
	0x6c022c38f90a4c07, 0x3601161cf205268d, 0x1b8e0b0e798c13c8, 0x83478b07b2468764,
	0xa011d380818e8f40, 0x5086e740ce47c920, 0x2843fd2067adea10, 0x14aff010bdd87508,
	0x0ad97808d06cb404, 0x05e23c0468365a02, 0x8c711e02341b2d01, 0x46b60f011a83988e,
	0x90dab52a387ae76f, 0x486dd4151c3dfdb9, 0x24b86a840e90f0d2, 0x125c354207487869,
	0x092e94218d243cba, 0x8a174a9ec8121e5d, 0x4585254f64090fa0, 0xaccc9ca9328a8950,
	0x9d4df05d5f661451, 0xc0a878a0a1330aa6, 0x60543c50de970553, 0x302a1e286fc58ca7,
	0x18150f14b9ec46dd, 0x0c84890ad27623e0, 0x0642ca05693b9f70, 0x0321658cba93c138,
	0x86275df09ce8aaa8, 0x439da0784e745554, 0xafc0503c273aa42a, 0xd960281e9d1d5215,
	0xe230140fc0802984, 0x71180a8960409a42, 0xb60c05ca30204d21, 0x5b068c651810a89e,
	0x456c34887a3805b9, 0xac361a443d1c8cd2, 0x561b0d22900e4669, 0x2b838811480723ba,
	0x9bcf4486248d9f5d, 0xc3e9224312c8c1a0, 0xeffa11af0964ee50, 0xf97d86d98a327728,
	0xe4fa2054a80b329c, 0x727d102a548b194e, 0x39b008152acb8227, 0x9258048415eb419d,
	0x492c024284fbaec0, 0xaa16012142f35760, 0x550b8e9e21f7a530, 0xa48b474f9ef5dc18,
	0x70a6a56e2440598e, 0x3853dc371220a247, 0x1ca76e95091051ad, 0x0edd37c48a08a6d8,
	0x07e095624504536c, 0x8d70c431ac02a736, 0xc83862965601dd1b, 0x641c314b2b8ee083,
}

// roundConstants are C1…C12 of RFC 6986 §6 in the RFC's notation (most significant byte first).
var roundConstants = [12]string{
	"b1085bda1ecadae9ebcb2f81c0657c1f2f6a76432e45d016714eb88d7585c4fc4b7ce09192676901a2422a08a460d31505767436cc744d23dd806559f2a64507",
	"6fa3b58aa99d2f1a4fe39d460f70b5d7f3feea720a232b9861d55e0f16b501319ab5176b12d699585cb561c2db0aa7ca55dda21bd7cbcd56e679047021b19bb7",
	"f574dcac2bce2fc70a39fc286a3d843506f15e5f529c1f8bf2ea7514b1297b7bd3e20fe490359eb1c1c93a376062db09c2b6f443867adb31991e96f50aba0ab2",
	"ef1fdfb3e81566d2f948e1a05d71e4dd488e857e335c3c7d9d721cad685e353fa9d72c82ed03d675d8b71333935203be3453eaa193e837f1220cbebc84e3d12e",
	"4bea6bacad4747999a3f410c6ca923637f151c1f1686104a359e35d7800fffbdbfcd1747253af5a3dfff00b723271a167a56a27ea9ea63f5601758fd7c6cfe57",
	"ae4faeae1d3ad3d96fa4c33b7a3039c02d66c4f95142a46c187f9ab49af08ec6cffaa6b71c9ab7b40af21f66c2bec6b6bf71c57236904f35fa68407a46647d6e",
	"f4c70e16eeaac5ec51ac86febf240954399ec6c7e6bf87c9d3473e33197a93c90992abc52d822c3706476983284a05043517454ca23c4af38886564d3a14d493",
	"9b1f5b424d93c9a703e7aa020c6e41414eb7f8719c36de1e89b4443b4ddbc49af4892bcb929b069069d18d2bd1a5c42f36acc2355951a8d9a47f0dd4bf02e71e",
	"378f5a541631229b944c9ad8ec165fde3a7d3a1b258942243cd955b7e00d0984800a440bdbb2ceb17b2b8a9aa6079c540e38dc92cb1f2a607261445183235adb",
	"abbedea680056f52382ae548b2e4f3f38941e71cff8a78db1fffe18a1b3361039fe76702af69334b7a1e6c303b7652f43698fad1153bb6c374b4c7fb98459ced",
	"7bcd9ed0efc889fb3002c6cd635afe94d8fa6bbbebab076120018021148466798a1d71efea48b9caefbacd1d7d476e98dea2594ac06fd85d6bcaa4cd81f32d1b",
	"378ee767f11631bad21380b00449b17acda43c32bcdf1d77f82012d430219f9b5d80ef9d1891cc86e71da4aa88e12852faf417d5d9b21b9948bc924af11bd720",
}

// block is a 512-bit vector as eight little-endian 64-bit lanes: lane 0 holds bytes 0–7 of the
// byte string (the least significant end in the RFC's notation).
type block [8]uint64

// tables holds what the compression function needs, computed once from the standard's tables.
type tables struct {
	tab [8][256]uint64 // the fused L∘P∘S: contribution of byte value b in lane j
	c   [12]block
}

// The tables are computed from constants and never written after, so sharing them is safe.
var stTables = buildTables()

func buildTables() *tables {
	t := &tables{}
	for j := range 8 {
		for b := range 256 {
			var acc uint64
			for k := range 8 {
				if pi[b]&(1<<k) != 0 {
					acc ^= matrixA[63-(8*j+k)]
				}
			}
			t.tab[j][b] = acc
		}
	}
	for i, h := range roundConstants {
		var be [64]byte
		for k := range 64 {
			be[k] = unhex(h[2*k])<<4 | unhex(h[2*k+1])
		}
		var le [64]byte
		for k := range 64 {
			le[k] = be[63-k]
		}
		for j := range 8 {
			t.c[i][j] = binary.LittleEndian.Uint64(le[8*j:])
		}
	}
	return t
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	}
	panic("gost: bad constant")
}

// lps computes L(P(S(x ⊕ y))).
func (t *tables) lps(x, y *block) block {
	var in, out block
	for i := range 8 {
		in[i] = x[i] ^ y[i]
	}
	for i := range 8 {
		sh := uint(8 * i)
		out[i] = t.tab[0][byte(in[0]>>sh)] ^ t.tab[1][byte(in[1]>>sh)] ^ t.tab[2][byte(in[2]>>sh)] ^
			t.tab[3][byte(in[3]>>sh)] ^ t.tab[4][byte(in[4]>>sh)] ^ t.tab[5][byte(in[5]>>sh)] ^
			t.tab[6][byte(in[6]>>sh)] ^ t.tab[7][byte(in[7]>>sh)]
	}
	return out
}

// g is the compression function g_N(h, m) of RFC 6986 §7.
func (t *tables) g(h, n, m *block) {
	k := t.lps(h, n)
	s := *m
	for i := range 12 {
		s = t.lps(&s, &k)
		k = t.lps(&k, &t.c[i])
	}
	for i := range 8 {
		h[i] ^= s[i] ^ k[i] ^ m[i]
	}
}

func add512(a *block, b *block) {
	var carry uint64
	for i := range 8 {
		s := a[i] + b[i]
		c1 := uint64(0)
		if s < a[i] {
			c1 = 1
		}
		s2 := s + carry
		if s2 < s {
			c1 = 1
		}
		a[i] = s2
		carry = c1
	}
}

// digest is Streebog as a hash.Hash.
type digest struct {
	size   int
	h      block
	n      block
	sigma  block
	buf    [BlockSize]byte
	bufLen int
}

// New256 returns a Streebog-256 hash.
func New256() hash.Hash { d := &digest{size: Size256}; d.Reset(); return d }

// New512 returns a Streebog-512 hash.
func New512() hash.Hash { d := &digest{size: Size512}; d.Reset(); return d }

// Sum256 returns the Streebog-256 digest of data, in the byte order OpenSSL prints.
func Sum256(data []byte) [Size256]byte {
	d := New256()
	d.Write(data)
	var out [Size256]byte
	d.Sum(out[:0])
	return out
}

// Sum512 returns the Streebog-512 digest of data.
func Sum512(data []byte) [Size512]byte {
	d := New512()
	d.Write(data)
	var out [Size512]byte
	d.Sum(out[:0])
	return out
}

func (d *digest) Reset() {
	iv := uint64(0)
	if d.size == Size256 {
		iv = 0x0101010101010101
	}
	for i := range 8 {
		d.h[i], d.n[i], d.sigma[i] = iv, 0, 0
	}
	d.bufLen = 0
}

func (d *digest) Size() int      { return d.size }
func (d *digest) BlockSize() int { return BlockSize }

func (d *digest) compress(b []byte, bits uint64) {
	var m block
	for i := range 8 {
		m[i] = binary.LittleEndian.Uint64(b[8*i:])
	}
	stTables.g(&d.h, &d.n, &m)
	add512(&d.n, &block{bits})
	add512(&d.sigma, &m)
}

func (d *digest) Write(p []byte) (int, error) {
	n := len(p)
	if d.bufLen > 0 {
		k := copy(d.buf[d.bufLen:], p)
		d.bufLen += k
		p = p[k:]
		if d.bufLen < BlockSize {
			return n, nil
		}
		d.compress(d.buf[:], 512)
		d.bufLen = 0
	}
	for len(p) >= BlockSize {
		d.compress(p[:BlockSize], 512)
		p = p[BlockSize:]
	}
	d.bufLen = copy(d.buf[:], p)
	return n, nil
}

func (d *digest) Sum(in []byte) []byte {
	c := *d
	var last [BlockSize]byte
	copy(last[:], c.buf[:c.bufLen])
	last[c.bufLen] = 1
	c.compress(last[:], uint64(c.bufLen)*8)
	var zero block
	n, sigma := c.n, c.sigma
	stTables.g(&c.h, &zero, &n)
	stTables.g(&c.h, &zero, &sigma)
	var out [64]byte
	for i := range 8 {
		binary.LittleEndian.PutUint64(out[8*i:], c.h[i])
	}
	if d.size == Size256 {
		return append(in, out[32:]...)
	}
	return append(in, out[:]...)
}
