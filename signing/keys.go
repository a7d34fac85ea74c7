// Package signing holds the broker's signing keys: stored encrypted under the master key,
// rotated with an overlap, published as a JWK set, and the JWT signer over them.
package signing

import (
	"context"
	"crypto"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/go-jose/go-jose/v3"
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
)

// keyStore is what the key set needs of the database.
type keyStore interface {
	SigningKeys(ctx context.Context) ([]storage.SigningKey, error)
	AddSigningKey(ctx context.Context, k *storage.SigningKey) error
	RetireSigningKeys(ctx context.Context, alg, keep string, retireAt, expiresAt time.Time) error
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
}

type signingKey struct {
	kid       string
	alg       string
	private   crypto.Signer
	notBefore time.Time
	retiredAt *time.Time
}

// ErrWrongMasterKey is returned when a signing key does not decrypt with secrets.master_key.
var ErrWrongMasterKey = errors.New("cannot decrypt private key: wrong master key? (secrets.master_key)")

// KeySet holds the decrypted signing keys in memory and reloads them from the database, so that
// a rotation made on one replica reaches every other without a restart.
type KeySet struct {
	store     keyStore
	aead      cipher.AEAD
	reload    time.Duration
	overlap   time.Duration
	publishIn time.Duration
	now       func() time.Time

	mu       sync.RWMutex
	keys     map[string]*signingKey
	order    []*signingKey
	loadedAt time.Time
}

// KeySetOptions tunes a KeySet.
type KeySetOptions struct {
	// MasterKey encrypts private keys at rest (AES-256-GCM); 32 bytes.
	MasterKey []byte
	// Reload is how often the set is re-read from the database.
	Reload time.Duration
	// Overlap is how long a retired key stays published: the longest lifetime of anything it signed.
	Overlap time.Duration
	// PublishBeforeUse is how long a new key is published before it signs.
	PublishBeforeUse time.Duration
}

// NewKeySet makes a key set over store.
func NewKeySet(store keyStore, opts KeySetOptions) (*KeySet, error) {
	if len(opts.MasterKey) < 32 {
		return nil, errors.New("key set: master key must be at least 32 bytes")
	}
	sum := sha256.Sum256(opts.MasterKey)
	block, err := aes.NewCipher(sum[:])
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, fmt.Errorf("key set: %w", err)
	}
	return &KeySet{store: store, aead: aead, reload: opts.Reload, overlap: opts.Overlap, publishIn: opts.PublishBeforeUse, now: time.Now, keys: map[string]*signingKey{}}, nil
}

// Load re-reads every published key from the database and decrypts the new ones.
func (ks *KeySet) Load(ctx context.Context) error {
	rows, err := ks.store.SigningKeys(ctx)
	if err != nil {
		return fmt.Errorf("load signing keys: %w", err)
	}
	ks.mu.RLock()
	old := ks.keys
	ks.mu.RUnlock()
	keys := make(map[string]*signingKey, len(rows))
	order := make([]*signingKey, 0, len(rows))
	for _, r := range rows {
		k := old[r.KID]
		if k == nil {
			priv, err := ks.decrypt(r.KID, r.PrivateEnc)
			if err != nil {
				return fmt.Errorf("load signing key %s: %w", r.KID, err)
			}
			k = &signingKey{kid: r.KID, alg: r.Alg, private: priv}
		}
		k = &signingKey{kid: k.kid, alg: k.alg, private: k.private, notBefore: r.NotBefore, retiredAt: r.RetiredAt}
		keys[r.KID] = k
		order = append(order, k)
	}
	ks.mu.Lock()
	ks.keys, ks.order, ks.loadedAt = keys, order, ks.now()
	ks.mu.Unlock()
	return nil
}

func (ks *KeySet) maybeReload(ctx context.Context) {
	ks.mu.RLock()
	stale := ks.now().Sub(ks.loadedAt) > ks.reload
	ks.mu.RUnlock()
	if stale {
		_ = ks.Load(ctx) // keep serving the keys we have; the next call tries again
	}
}

// Run reloads the set every Reload interval until ctx ends.
func (ks *KeySet) Run(ctx context.Context) {
	t := time.NewTicker(ks.reload)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			_ = ks.Load(ctx)
		}
	}
}

// Ensure creates a first key for each alg that has none, then loads the set.
func (ks *KeySet) Ensure(ctx context.Context, algs ...string) error {
	if err := ks.Load(ctx); err != nil {
		return err
	}
	for _, alg := range algs {
		ks.mu.RLock()
		have := false
		for _, k := range ks.order {
			if k.alg == alg && k.retiredAt == nil {
				have = true
			}
		}
		ks.mu.RUnlock()
		if !have {
			if _, err := ks.add(ctx, alg, ks.now()); err != nil {
				return err
			}
		}
	}
	return ks.Load(ctx)
}

// Rotate adds the next key for alg. It is published at once and signs after PublishBeforeUse;
// the previous keys of alg stop signing then and stay published for Overlap after that.
func (ks *KeySet) Rotate(ctx context.Context, alg string) (string, error) {
	start := ks.now().Add(ks.publishIn)
	var kid string
	err := ks.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		kid, err = ks.add(ctx, alg, start)
		if err != nil {
			return err
		}
		return ks.store.RetireSigningKeys(ctx, alg, kid, start, start.Add(ks.overlap))
	})
	if err != nil {
		return "", err
	}
	return kid, ks.Load(ctx)
}

func (ks *KeySet) add(ctx context.Context, alg string, notBefore time.Time) (string, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	default:
		return "", fmt.Errorf("generate key: unsupported alg %q", alg)
	}
	if err != nil {
		return "", fmt.Errorf("generate %s key: %w", alg, err)
	}
	kidBytes := make([]byte, 12)
	if _, err := rand.Read(kidBytes); err != nil {
		return "", fmt.Errorf("generate key id: %w", err)
	}
	kid := strings.ToLower(alg[:2]) + "-" + base64.RawURLEncoding.EncodeToString(kidBytes)
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return "", fmt.Errorf("encode %s key: %w", alg, err)
	}
	enc, err := ks.encrypt(kid, der)
	if err != nil {
		return "", err
	}
	pub, err := json.Marshal(jose.JSONWebKey{Key: priv.Public(), KeyID: kid, Algorithm: alg, Use: "sig"})
	if err != nil {
		return "", fmt.Errorf("encode public key: %w", err)
	}
	now := ks.now().UTC()
	if err := ks.store.AddSigningKey(ctx, &storage.SigningKey{KID: kid, Alg: alg, PrivateEnc: enc, PublicJWK: string(pub), CreatedAt: now, NotBefore: notBefore}); err != nil {
		return "", err
	}
	return kid, nil
}

func (ks *KeySet) encrypt(kid string, plain []byte) ([]byte, error) {
	nonce := make([]byte, ks.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("encrypt key: %w", err)
	}
	return ks.aead.Seal(nonce, nonce, plain, []byte(kid)), nil
}

func (ks *KeySet) decrypt(kid string, enc []byte) (crypto.Signer, error) {
	n := ks.aead.NonceSize()
	if len(enc) < n {
		return nil, errors.New("encrypted key too short")
	}
	der, err := ks.aead.Open(nil, enc[:n], enc[n:], []byte(kid))
	if err != nil {
		return nil, ErrWrongMasterKey
	}
	k, err := x509.ParsePKCS8PrivateKey(der)
	if err != nil {
		return nil, fmt.Errorf("parse private key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("unsupported key type %T", k)
	}
	return s, nil
}

// signer returns the key that signs alg now: the newest whose time has come and that is not
// retired.
func (ks *KeySet) signer(ctx context.Context, alg string) (*signingKey, error) {
	ks.maybeReload(ctx)
	now := ks.now()
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	var best *signingKey
	for _, k := range ks.order {
		if k.alg != alg || k.notBefore.After(now) || (k.retiredAt != nil && !k.retiredAt.After(now)) {
			continue
		}
		if best == nil || !k.notBefore.Before(best.notBefore) {
			best = k
		}
	}
	if best == nil {
		return nil, fmt.Errorf("no active %s signing key (run `esia-broker keys rotate --alg %s`)", alg, alg)
	}
	return best, nil
}

func (ks *KeySet) publicKey(ctx context.Context, kid string) (crypto.PublicKey, string, bool) {
	ks.mu.RLock()
	k, ok := ks.keys[kid]
	ks.mu.RUnlock()
	if !ok {
		// A replica may have rotated since our last load.
		ks.maybeReload(ctx)
		ks.mu.RLock()
		k, ok = ks.keys[kid]
		ks.mu.RUnlock()
		if !ok {
			return nil, "", false
		}
	}
	return k.private.Public(), k.alg, true
}

// JWKS returns the public keys to publish.
func (ks *KeySet) JWKS(ctx context.Context) jose.JSONWebKeySet {
	ks.maybeReload(ctx)
	ks.mu.RLock()
	defer ks.mu.RUnlock()
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(ks.order))}
	for _, k := range ks.order {
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: k.private.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
	}
	return set
}

// Signer implements fosite's jwt.Signer over the key set. It signs with the active key of
// its default alg, or of the alg a token's header asks for (the per-client ID token alg), and
// verifies by kid against every published key.
type Signer struct {
	keys       *KeySet
	defaultAlg string
}

// AlgHint is the header field through which a session asks for a signing alg; fosite drops
// "alg" from the header map, so the hint never reaches the token itself.
const AlgHint = "alg"

// Generate signs claims with the current key of the header's alg hint, or of the default alg.
func (s *Signer) Generate(ctx context.Context, claims jwt.MapClaims, header jwt.Mapper) (string, string, error) {
	alg := s.defaultAlg
	if h, ok := header.(*jwt.Headers); ok {
		if a, _ := h.Get(AlgHint).(string); a == "RS256" || a == "ES256" {
			alg = a
		}
	}
	k, err := s.keys.signer(ctx, alg)
	if err != nil {
		return "", "", err
	}
	jwk := &jose.JSONWebKey{Key: k.private, KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
	return (&jwt.DefaultSigner{GetPrivateKey: func(context.Context) (any, error) { return jwk, nil }}).Generate(ctx, claims, header)
}

// Decode parses and verifies a token signed with any published key.
func (s *Signer) Decode(ctx context.Context, token string) (*jwt.Token, error) {
	return jwt.ParseWithClaims(token, jwt.MapClaims{}, func(t *jwt.Token) (any, error) {
		kid, _ := t.Header["kid"].(string)
		pub, alg, ok := s.keys.publicKey(ctx, kid)
		if !ok {
			return nil, fmt.Errorf("unknown signing key %q", kid)
		}
		if string(t.Method) != alg {
			return nil, fmt.Errorf("token alg %s does not match key alg %s", t.Method, alg)
		}
		return pub, nil
	})
}

// Validate verifies a token and returns its signature.
func (s *Signer) Validate(ctx context.Context, token string) (string, error) {
	if _, err := s.Decode(ctx, token); err != nil {
		return "", err
	}
	return s.GetSignature(ctx, token)
}

// GetSignature returns the signature part of a token.
func (s *Signer) GetSignature(_ context.Context, token string) (string, error) {
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		return "", fosite.ErrInvalidTokenFormat
	}
	return parts[2], nil
}

// Hash is SHA-256 (at_hash and c_hash).
func (s *Signer) Hash(_ context.Context, in []byte) ([]byte, error) {
	h := sha256.Sum256(in)
	return h[:], nil
}

// GetSigningMethodLength is the length of Hash.
func (s *Signer) GetSigningMethodLength(context.Context) int { return sha256.Size }

// NewSigner signs with keys, in defaultAlg unless a token's header asks for another.
func NewSigner(keys *KeySet, defaultAlg string) *Signer {
	return &Signer{keys: keys, defaultAlg: defaultAlg}
}
