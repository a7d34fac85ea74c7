// Package esia is a client of Gosuslugi's identity system ESIA: the GOST-signed authorization
// URL (/aas/oauth2/v2/ac), the token exchange and refresh (/aas/oauth2/v3/te), token checks,
// and the person, contacts and kids resources. It imports nothing of the broker; its GOST
// cryptography is in esia/gost.
package esia

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/esia-broker/esia-broker/esia/gost"
)

// Signer makes ESIA's client_secret: a detached GOST R 34.10-2012 signature (64 bytes, the byte
// order OpenSSL writes) over a message, and names the certificate by its hash.
type Signer interface {
	Sign(ctx context.Context, msg []byte) ([]byte, error)
	CertificateHash() string
}

// KeySigner signs in process with a GOST key.
type KeySigner struct {
	key  *gost.PrivateKey
	hash string
}

// NewKeySigner signs with key; certDER is the certificate registered at ESIA for the client.
func NewKeySigner(key *gost.PrivateKey, certDER []byte) (*KeySigner, error) {
	cert, err := gost.ParseCertificate(certDER)
	if err != nil {
		return nil, fmt.Errorf("esia signer: %w", err)
	}
	if cert.PublicKey.X.Cmp(key.X) != 0 || cert.PublicKey.Y.Cmp(key.Y) != 0 {
		return nil, errors.New("esia signer: the certificate does not belong to the private key")
	}
	return &KeySigner{key: key, hash: gost.CertificateHash(certDER)}, nil
}

// Sign implements Signer.
func (s *KeySigner) Sign(_ context.Context, msg []byte) ([]byte, error) {
	return s.key.SignMessage(rand.Reader, msg)
}

// CertificateHash implements Signer.
func (s *KeySigner) CertificateHash() string { return s.hash }

// CommandSigner runs an external program that reads the message on standard input and writes
// the raw signature on standard output: OpenSSL with the gost engine, or CryptoPro's csptest,
// for keys kept in a token or HSM.
type CommandSigner struct {
	// Argv is the command and its arguments, e.g. openssl dgst -engine gost -md_gost12_256
	// -sign key.pem (OpenSSL reads the message from stdin when no file is named).
	Argv []string
	// Reverse byte-reverses the output: CryptoPro writes signatures little-endian.
	Reverse bool
	// Hash is the certificate hash (gost.CertificateHash of the registered certificate).
	Hash    string
	Timeout time.Duration
}

// Sign implements Signer.
func (s *CommandSigner) Sign(ctx context.Context, msg []byte) ([]byte, error) {
	if len(s.Argv) == 0 {
		return nil, errors.New("esia command signer: no command configured")
	}
	timeout := s.Timeout
	if timeout <= 0 {
		timeout = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, s.Argv[0], s.Argv[1:]...)
	cmd.Stdin = bytes.NewReader(msg)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("esia command signer %s: %w: %s", s.Argv[0], err, strings.TrimSpace(stderr.String()))
	}
	if len(out) != gost.SignatureSize {
		return nil, fmt.Errorf("esia command signer %s: wrote %d bytes, want a %d-byte raw signature", s.Argv[0], len(out), gost.SignatureSize)
	}
	if s.Reverse {
		out = gost.ReverseBytes(out)
	}
	return out, nil
}

// CertificateHash implements Signer.
func (s *CommandSigner) CertificateHash() string { return s.Hash }
