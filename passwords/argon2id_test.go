package passwords

import "testing"

// Table tests at the edges of each bound, so that a bound moved by one is caught.

func TestCheckArgon2Bounds(t *testing.T) {
	for _, tc := range []struct {
		mem, time, par uint64
		ok             bool
	}{
		{65536, 1, 2, true},
		{maxArgon2MemoryKiB, 1, 1, true},
		{maxArgon2MemoryKiB + 1, 1, 1, false},
		{0, 1, 1, false},
		{8192, maxArgon2Time, 1, true},
		{8192, maxArgon2Time + 1, 1, false},
		{8192, 0, 1, false}, // argon2 panics on 0 rounds: a stored hash must not crash the broker
		{8192, 1, 0, false},
		{8192, 1, maxArgon2Threads, true},
		{8192, 1, maxArgon2Threads + 1, false},
	} {
		if err := checkArgon2(tc.mem, tc.time, tc.par); (err == nil) != tc.ok {
			t.Errorf("m=%d t=%d p=%d: %v, want ok=%v", tc.mem, tc.time, tc.par, err, tc.ok)
		}
	}
	if ok, err := VerifyPassword("$argon2id$v=19$m=8192,t=0,p=1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "x"); ok || err == nil {
		t.Errorf("a hash with t=0: %v %v", ok, err)
	}
}

func TestDefaultArgon2(t *testing.T) {
	if got := DefaultArgon2(); got != (Argon2Params{Time: 1, MemoryKiB: 65536, Threads: 2}) {
		t.Errorf("default argon2id parameters %+v, want t=1, 64 MiB, 2 lanes", got)
	}
}
