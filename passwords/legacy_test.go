package passwords

import (
	"errors"
	"strings"
	"testing"
)

// The PBKDF2 and unsalted vectors were made with Python's hashlib (another implementation);
// the bcrypt one is crypt_blowfish's published test vector for "U*U".
// own are argon2id parameters as the broker's (small, for the test's speed).
var own = Argon2Params{Time: 2, MemoryKiB: 19 * 1024, Threads: 1}

func TestImportedHashes(t *testing.T) {
	const pw = "Sunflower-2015"
	tests := []struct {
		name, hash, password string
		weak                 bool
		format               string
	}{
		{"django pbkdf2_sha256", "pbkdf2_sha256$260000$Zm9vYmFyc2FsdA$DI9174Jn/0hAOvCMsIq8fKpGIHjk9sxXiotD7YZj3j4=", pw, false, FormatPBKDF2},
		{"passlib pbkdf2-sha256", "$pbkdf2-sha256$29000$AAECAwQFBgcICQoLDA0ODw$GusCNOBsij23YKE7xjUagfeCzmxyw9RwfiEM/0hYHqw", pw, false, FormatPBKDF2},
		{"PHC pbkdf2-sha512", "$pbkdf2-sha512$i=25000,l=64$AAECAwQFBgcICQoLDA0ODw$D7TKaEQMqCfyg1kJCASEPGwkYwMmNxxieJwD8Am1/u7AoqxuJxqgaR2bfB64x9v+eVh1BOTwctazhDMR0BDA3Q", pw, false, FormatPBKDF2},
		{"bcrypt 2a, cost 5 (weak)", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", "U*U", true, FormatBcrypt},
		{"bcrypt 2a, cost 10", "$2a$10$6phbKEpEXwOoS0cRSPkn2.TM/c0/z/connnZ0O7BRsWgfuLArBzxO", pw, false, FormatBcrypt},
		{"md5 hex", "36f25706170402e9628df575cc50218f", pw, true, FormatWeak},
		{"sha1 hex", "671B7B9C9020360B3379FB190E2E5A7FF47C55A7", pw, true, FormatWeak},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if tc.weak {
				if _, _, _, err := ImportHash(tc.hash, false, own); !errors.Is(err, ErrHashWeak) {
					t.Fatalf("a weak hash without --accept-weak: %v, want ErrHashWeak", err)
				}
			}
			stored, format, weak, err := ImportHash(tc.hash, true, own)
			if err != nil || format != tc.format || weak != tc.weak {
				t.Fatalf("ImportHash: %q, %v; want format %s", format, err, tc.format)
			}
			if ok, err := VerifyStoredPassword(stored, tc.password); !ok || err != nil {
				t.Errorf("the right password: %v, %v", ok, err)
			}
			for _, wrong := range []string{"", tc.password + "x", strings.ToLower(tc.password) + "!"} {
				if ok, err := VerifyStoredPassword(stored, wrong); ok || err != nil {
					t.Errorf("wrong password %q: %v, %v", wrong, ok, err)
				}
			}
			if !NeedsRehash(stored, own) {
				t.Error("an imported hash is not marked for re-hashing")
			}
		})
	}
	cheap, _ := HashPassword(pw, Argon2Params{Time: 1, MemoryKiB: 8, Threads: 1})
	if _, _, _, err := ImportHash(cheap, false, own); !errors.Is(err, ErrHashWeak) {
		t.Errorf("argon2id with 8 KiB, without --accept-weak: %v", err)
	}
	if _, _, weak, err := ImportHash(cheap, true, own); err != nil || !weak || !NeedsRehash(cheap, own) {
		t.Errorf("argon2id with 8 KiB, with --accept-weak: weak %v, %v; rehashed %v", weak, err, NeedsRehash(cheap, own))
	}
	mine, _ := HashPassword(pw, own)
	if _, f, weak, err := ImportHash(mine, false, own); err != nil || f != FormatArgon2id || weak || NeedsRehash(mine, own) {
		t.Errorf("the broker's own argon2id: %q, %v, weak %v, rehash %v", f, err, weak, NeedsRehash(mine, own))
	}
}

func TestImportedHashesRefused(t *testing.T) {
	for _, tc := range []struct {
		name, hash string
		want       error
	}{
		{"empty", "", nil},
		{"plain text", "qwerty123", ErrHashUnknown},
		{"crypt md5", "$1$saltsalt$2vnaRpHa6Jxjz5n83ok8Z0", ErrHashUnknown},
		{"forged weak form", "$weak$md5$36f25706170402e9628df575cc50218f", ErrHashUnknown},
		{"bcrypt cut short", "$2a$05$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvy", ErrHashUnknown},
		{"bcrypt cost 13", "$2a$13$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", ErrHashBounds},
		{"argon2id one-byte key", "$argon2id$v=19$m=65536,t=1,p=2$c2FsdHNhbHRzYWx0$NQ", ErrHashBounds},
		{"argon2id 1 GiB", "$argon2id$v=19$m=1048576,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", ErrHashBounds},
		{"pbkdf2-sha1 a million with a 64-byte key (4 blocks)", "$pbkdf2-sha1$i=1000000,l=64$AAECAwQFBgcICQoLDA0ODw$D7TKaEQMqCfyg1kJCASEPGwkYwMmNxxieJwD8Am1/u7AoqxuJxqgaR2bfB64x9v+eVh1BOTwctazhDMR0BDA3Q", ErrHashBounds},
		{"argon2id twice the broker's work", "$argon2id$v=19$m=19456,t=5,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA", ErrHashBounds},
		{"pbkdf2 two million", "$pbkdf2-sha512$i=2000000,l=64$AAECAwQFBgcICQoLDA0ODw$D7TKaEQMqCfyg1kJCASEPGwkYwMmNxxieJwD8Am1/u7AoqxuJxqgaR2bfB64x9v+eVh1BOTwctazhDMR0BDA3Q", ErrHashBounds},
		{"bcrypt cost 31", "$2a$31$CCCCCCCCCCCCCCCCCCCCC.E5YPO9kmyuRGyh0XouQYb4YMJKvyOeW", ErrHashBounds},
		{"pbkdf2 one iteration", "pbkdf2_sha256$1$Zm9vYmFyc2FsdA$DI9174Jn/0hAOvCMsIq8fKpGIHjk9sxXiotD7YZj3j4=", ErrHashBounds},
		{"pbkdf2 a billion iterations", "pbkdf2_sha256$1000000000$Zm9vYmFyc2FsdA$DI9174Jn/0hAOvCMsIq8fKpGIHjk9sxXiotD7YZj3j4=", ErrHashBounds},
		{"pbkdf2 unknown digest", "pbkdf2_md5$260000$Zm9vYmFyc2FsdA$DI9174Jn/0hAOvCMsIq8fKpGIHjk9sxXiotD7YZj3j4=", ErrHashUnknown},
		{"pbkdf2 short key", "pbkdf2_sha256$260000$Zm9v$AAAA", ErrHashBounds},
		{"argon2id 1 TiB", "$argon2id$v=19$m=1099511627776,t=1,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNoaGFzaA", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := ImportHash(tc.hash, true, own)
			if err == nil || (tc.want != nil && !errors.Is(err, tc.want)) {
				t.Errorf("ImportHash(%q) = %v, want %v", tc.hash, err, tc.want)
			}
		})
	}
}
