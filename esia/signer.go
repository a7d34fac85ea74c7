// Package esia is a client of Gosuslugi's identity system ESIA: the GOST-signed authorization
// URL (/aas/oauth2/v2/ac), the token exchange and refresh (/aas/oauth2/v3/te), token checks,
// and the person, contacts and kids resources. It imports nothing of the broker; its GOST
// cryptography is in esia/gost.
package esia

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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

// CommandSigner runs an external program to sign: OpenSSL with the gost engine, or CryptoPro's
// csptest (-keyset -sign GOST12_256), for keys kept in a token, an HSM or a CryptoPro container.
// The program gets the message on standard input, or, when an argument holds {in}, in a file of
// that name; it writes the signature on standard output, or, when an argument holds {out}, to
// that file (csptest works with -in and -out files). The signature must be the raw 64 bytes (or
// their base64); CryptoPro's cryptcp makes PKCS#7 signatures, which ESIA's v2 does not take.
type CommandSigner struct {
	// Argv is the command and its arguments, e.g.
	//   openssl dgst -engine gost -md_gost12_256 -sign key.pem
	//   csptest -keyset -sign GOST12_256 -container '\\.\HDIMAGE\esia' -keytype exchange -in {in} -out {out}
	Argv []string
	// Reverse byte-reverses the output: CryptoPro writes signatures little-endian, OpenSSL
	// big-endian as ESIA wants them.
	Reverse bool
	// Hash is the certificate hash (gost.CertificateHash of the registered certificate).
	Hash    string
	Timeout time.Duration
	// TempDir holds the {in} and {out} files (a fresh directory per signature, removed after);
	// os.TempDir when empty.
	TempDir string
}

// Placeholders of CommandSigner arguments.
const (
	InFile  = "{in}"
	OutFile = "{out}"
)

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
	argv := slices.Clone(s.Argv)
	var inPath, outPath string
	if slices.ContainsFunc(argv, func(a string) bool { return strings.Contains(a, InFile) || strings.Contains(a, OutFile) }) {
		dir, err := os.MkdirTemp(s.TempDir, "esia-sign-")
		if err != nil {
			return nil, fmt.Errorf("esia command signer: temporary directory: %w", err)
		}
		defer os.RemoveAll(dir)
		inPath, outPath = filepath.Join(dir, "message.txt"), filepath.Join(dir, "signature.bin")
		for i, a := range argv {
			argv[i] = strings.ReplaceAll(strings.ReplaceAll(a, InFile, inPath), OutFile, outPath)
		}
	}
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	// A child of the command that keeps its output open must not hold the login past the
	// timeout: Wait gives up a second after the command is killed.
	cmd.WaitDelay = time.Second
	if slices.ContainsFunc(s.Argv, func(a string) bool { return strings.Contains(a, InFile) }) {
		if err := os.WriteFile(inPath, msg, 0o600); err != nil {
			return nil, fmt.Errorf("esia command signer: write the message file: %w", err)
		}
	} else {
		cmd.Stdin = bytes.NewReader(msg)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("esia command signer %s: %w: %s", argv[0], err, redact(commandOutput(stderr.String(), out), s.Argv))
	}
	if slices.ContainsFunc(s.Argv, func(a string) bool { return strings.Contains(a, OutFile) }) {
		if out, err = os.ReadFile(outPath); err != nil {
			return nil, fmt.Errorf("esia command signer %s: it wrote no signature file: %w", argv[0], err)
		}
	}
	sig, err := rawSignature(out)
	if err != nil {
		return nil, fmt.Errorf("esia command signer %s: %w", argv[0], err)
	}
	if s.Reverse {
		sig = gost.ReverseBytes(sig)
	}
	return sig, nil
}

// rawSignature takes a 64-byte signature, or one written as base64 text.
func rawSignature(out []byte) ([]byte, error) {
	if len(out) == gost.SignatureSize {
		return out, nil
	}
	text := strings.Join(strings.Fields(string(out)), "")
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err := enc.DecodeString(text); err == nil && len(b) == gost.SignatureSize {
			return b, nil
		}
	}
	return nil, fmt.Errorf("wrote %d bytes, want a %d-byte raw signature (or its base64)", len(out), gost.SignatureSize)
}

// commandOutput is what a failed command printed (standard error, else standard output) on
// one line, for the error.
func commandOutput(stderr string, stdout []byte) string {
	text := strings.TrimSpace(stderr)
	if text == "" {
		text = strings.TrimSpace(string(stdout))
	}
	text = strings.Join(strings.Fields(text), " ")
	if len(text) > 500 {
		text = "…" + text[len(text)-500:]
	}
	return text
}

// redact hides in text the values of the command's secret arguments — the one after a flag
// named like a password or PIN (-password, -pin, -passin), and pass:… values — so that a tool
// that echoes its command line does not put a PIN in the broker's log.
func redact(text string, argv []string) string {
	var secrets []string
	for i, a := range argv {
		flag := strings.ToLower(strings.TrimLeft(a, "-"))
		if strings.HasPrefix(a, "-") && (strings.Contains(flag, "pass") || strings.Contains(flag, "pin")) && i+1 < len(argv) {
			secrets = append(secrets, argv[i+1])
		}
		if _, v, ok := strings.Cut(a, "pass:"); ok {
			secrets = append(secrets, v)
		}
		if k, v, ok := strings.Cut(a, "="); ok && strings.HasPrefix(a, "-") && (strings.Contains(strings.ToLower(k), "pass") || strings.Contains(strings.ToLower(k), "pin")) {
			secrets = append(secrets, v)
		}
	}
	for _, sec := range secrets {
		if len(sec) >= 2 {
			text = strings.ReplaceAll(text, sec, "***")
		}
	}
	return text
}

// CertificateHash implements Signer.
func (s *CommandSigner) CertificateHash() string { return s.Hash }

// SplitCommand splits a configured command line into arguments at spaces. Single or double
// quotes keep spaces inside an argument ('\\.\Aktiv Rutoken ECP 00 00\esia'); backslashes
// are plain characters, as CryptoPro's container names are full of them.
func SplitCommand(line string) ([]string, error) {
	var args []string
	var cur strings.Builder
	inArg := false
	var quote rune
	for _, r := range line {
		switch {
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\'' || r == '"':
			quote, inArg = r, true
		case r == ' ' || r == '\t' || r == '\n':
			if inArg {
				args = append(args, cur.String())
				cur.Reset()
				inArg = false
			}
		default:
			cur.WriteRune(r)
			inArg = true
		}
	}
	if quote != 0 {
		// The line is not repeated: it may hold a PIN.
		return nil, fmt.Errorf("unclosed %c quote in the command", quote)
	}
	if inArg {
		args = append(args, cur.String())
	}
	if len(args) == 0 {
		return nil, errors.New("empty command")
	}
	return args, nil
}
