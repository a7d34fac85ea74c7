package storage

import (
	"context"
	"fmt"
	"time"
)

// SigningKey is one signing key as stored: the private part encrypted by the caller.
type SigningKey struct {
	KID        string     `db:"kid"`
	Alg        string     `db:"alg"`
	PrivateEnc []byte     `db:"private_enc"`
	PublicJWK  string     `db:"public_jwk"`
	CreatedAt  time.Time  `db:"created_at"`
	NotBefore  time.Time  `db:"not_before"`
	RetiredAt  *time.Time `db:"retired_at"`
	ExpiresAt  *time.Time `db:"expires_at"`
}

const keyCols = `kid, alg, private_enc, public_jwk, created_at, not_before, retired_at, expires_at`

// AddSigningKey stores a new key.
func (s *Store) AddSigningKey(ctx context.Context, k *SigningKey) error {
	_, err := s.exec(ctx, `INSERT INTO signing_keys (`+keyCols+`) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		k.KID, k.Alg, k.PrivateEnc, k.PublicJWK, k.CreatedAt.UTC(), k.NotBefore.UTC(), k.RetiredAt, k.ExpiresAt)
	if err != nil {
		return fmt.Errorf("add signing key: %w", err)
	}
	return nil
}

// SigningKeys lists the keys that are still published (not past expires_at), oldest first.
func (s *Store) SigningKeys(ctx context.Context) ([]SigningKey, error) {
	var ks []SigningKey
	err := s.selectAll(ctx, &ks, `SELECT `+keyCols+` FROM signing_keys WHERE expires_at IS NULL OR expires_at > ? ORDER BY not_before, created_at`, s.clock())
	if err != nil {
		return nil, fmt.Errorf("list signing keys: %w", err)
	}
	return ks, nil
}

// RetireSigningKeys marks every signing key of alg other than keep as retired at retireAt: it
// stops signing then and stays published until expiresAt.
func (s *Store) RetireSigningKeys(ctx context.Context, alg, keep string, retireAt, expiresAt time.Time) error {
	_, err := s.exec(ctx, `UPDATE signing_keys SET retired_at = ?, expires_at = ? WHERE alg = ? AND kid <> ? AND retired_at IS NULL`,
		retireAt.UTC(), expiresAt.UTC(), alg, keep)
	if err != nil {
		return fmt.Errorf("retire signing keys: %w", err)
	}
	return nil
}
