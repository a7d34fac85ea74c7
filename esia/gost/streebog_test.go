package gost

import (
	"bytes"
	"encoding/hex"
	"testing"
)

// Vectors of RFC 6986 §10 (M1, M2) and the empty message, in the byte order OpenSSL's gost
// engine prints (the RFC writes the same values most-significant byte first).
func TestStreebogVectors(t *testing.T) {
	m1 := []byte("012345678901234567890123456789012345678901234567890123456789012")
	m2, _ := hex.DecodeString("d1e520e2e5f2f0e82c20d1f2f0e8e1eee6e820e2edf3f6e82c20e2e5fef2fa20f120eceef0ff20f1f2f0e5ebe0ece820ede020f5f0e0e1f0fbff20efebfaeafb20c8e3eef0e5e2fb")
	tests := []struct {
		name     string
		msg      []byte
		want256  string
		want512  string
		skip512  bool
		skip256  bool
		chunkLen int
	}{
		{name: "M1", msg: m1,
			want256: "9d151eefd8590b89daa6ba6cb74af9275dd051026bb149a452fd84e5e57b5500",
			want512: "1b54d01a4af5b9d5cc3d86d68d285462b19abc2475222f35c085122be4ba1ffa00ad30f8767b3a82384c6574f024c311e2a481332b08ef7f41797891c1646f48"},
		{name: "M2", msg: m2,
			want256: "9dd2fe4e90409e5da87f53976d7405b0c0cac628fc669a741d50063c557e8f50",
			want512: "1e88e62226bfca6f9994f1f2d51569e0daf8475a3b0fe61a5300eee46d961376035fe83549ada2b8620fcd7c496ce5b33f0cb9dddc2b6460143b03dabac9fb28"},
		{name: "empty", msg: nil,
			want256: "3f539a213e97c802cc229d474c6aa32a825a360b2a933a949fd925208d9ce1bb",
			want512: "8e945da209aa869f0455928529bcae4679e9873ab707b55315f56ceb98bef0a7362f715528356ee83cda5f2aac4c6ad2ba3a715c1bcd81cb8e9f90bf4c1c1a8a"},
		{name: "M2 in 7-byte writes", msg: m2, chunkLen: 7,
			want256: "9dd2fe4e90409e5da87f53976d7405b0c0cac628fc669a741d50063c557e8f50"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.chunkLen > 0 {
				h := New256()
				for p := tc.msg; len(p) > 0; {
					n := min(tc.chunkLen, len(p))
					h.Write(p[:n])
					p = p[n:]
				}
				if got := hex.EncodeToString(h.Sum(nil)); got != tc.want256 {
					t.Errorf("chunked 256 = %s, want %s", got, tc.want256)
				}
				return
			}
			if got := Sum256(tc.msg); hex.EncodeToString(got[:]) != tc.want256 {
				t.Errorf("256 = %x, want %s", got, tc.want256)
			}
			if got := Sum512(tc.msg); hex.EncodeToString(got[:]) != tc.want512 {
				t.Errorf("512 = %x, want %s", got, tc.want512)
			}
		})
	}
}

func TestStreebogSumDoesNotChangeState(t *testing.T) {
	h := New256()
	h.Write([]byte("abc"))
	a := h.Sum(nil)
	b := h.Sum(nil)
	h.Write([]byte("def"))
	c := h.Sum(nil)
	want := Sum256([]byte("abcdef"))
	if !bytes.Equal(a, b) || !bytes.Equal(c, want[:]) {
		t.Errorf("Sum changed state or Write after Sum wrong")
	}
	if h.Size() != 32 || h.BlockSize() != 64 || New512().Size() != 64 {
		t.Error("sizes")
	}
}
