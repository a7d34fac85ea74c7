package esia_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/esia/gost"
)

// TestHelperCSPTest is not a test: run as a child process (ESIA_TEST_CSPTEST=1) it stands in for
// CryptoPro CSP 5's `csptest -keyset -sign GOST12_256 -container C -keytype exchange -in F -out G`:
// it reads the message from the -in file and writes the detached raw signature, little-endian
// as CryptoPro writes it, to the -out file, printing what csptest prints. With -base64 it writes
// the signature as base64 text instead.
func TestHelperCSPTest(t *testing.T) {
	if os.Getenv("ESIA_TEST_CSPTEST") != "1" {
		return
	}
	args := os.Args
	if i := slices.Index(args, "--"); i >= 0 {
		args = args[i+1:]
	}
	fail := func(format string, a ...any) {
		fmt.Printf(format+"\n[ErrorCode: 0x80090016]\n", a...)
		os.Exit(1)
	}
	val := func(flag string) string {
		i := slices.Index(args, flag)
		if i < 0 || i+1 >= len(args) {
			fail("missing %s", flag)
		}
		return args[i+1]
	}
	if !slices.Contains(args, "-keyset") || val("-sign") != "GOST12_256" || val("-keytype") != "exchange" {
		fail("unsupported command line %q", args)
	}
	if val("-container") != os.Getenv("ESIA_TEST_CSPTEST_CONTAINER") {
		fail("CryptAcquireContext: keyset %q does not exist", val("-container"))
	}
	msg, err := os.ReadFile(val("-in"))
	if err != nil {
		fail("open -in: %v", err)
	}
	keyPEM, _ := os.ReadFile(os.Getenv("ESIA_TEST_CSPTEST_KEY"))
	key, err := gost.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		fail("key: %v", err)
	}
	sig, err := key.SignMessage(rand.Reader, msg)
	if err != nil {
		fail("sign: %v", err)
	}
	out := gost.ReverseBytes(sig) // CryptoPro's byte order
	if slices.Contains(args, "-base64") {
		out = []byte(base64.StdEncoding.EncodeToString(out) + "\r\n")
	}
	if err := os.WriteFile(val("-out"), out, 0o600); err != nil {
		fail("write -out: %v", err)
	}
	fmt.Println("CSP (Type:80) v5.0.12000 KC1 Release Ver:5.0.12000 OS:Linux CPU:AMD64 FastCode:READY:AVX.")
	fmt.Println("AcquireContext: OK. HCRYPTPROV: 23050387\nSignature was done\n[ErrorCode: 0x00000000]")
	os.Exit(0)
}

// standInCSPTest writes a `csptest` script into a directory of its own that runs the stand-in
// above, and returns its path.
func standInCSPTest(t *testing.T, keyFile, container string) string {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "csptest")
	body := fmt.Sprintf("#!/bin/sh\nESIA_TEST_CSPTEST=1 ESIA_TEST_CSPTEST_KEY=%q ESIA_TEST_CSPTEST_CONTAINER=%q exec %q -test.run='^TestHelperCSPTest$' -- \"$@\"\n", keyFile, container, self)
	if err := os.WriteFile(script, []byte(body), 0o700); err != nil {
		t.Fatal(err)
	}
	return script
}

// TestCommandSignerCryptoProFiles: the signer drives csptest as operators do — the message in an
// -in file, the signature from an -out file, byte-reversed — and the signature verifies as
// ESIA verifies it. Without the reversal it does not, and a missing container is a clear error.
func TestCommandSignerCryptoProFiles(t *testing.T) {
	key, cert, err := esiatest.NewClientCredentials("CSP")
	if err != nil {
		t.Fatal(err)
	}
	der, _ := gost.MarshalPKCS8PrivateKey(key)
	kp := filepath.Join(t.TempDir(), "key.pem")
	if err := os.WriteFile(kp, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	container := `\\.\HDIMAGE\esia broker`
	csptest := standInCSPTest(t, kp, container)
	line := csptest + ` -keyset -sign GOST12_256 -container '` + container + `' -keytype exchange -silent -in {in} -out {out}`
	argv, err := esia.SplitCommand(line)
	if err != nil {
		t.Fatal(err)
	}
	if argv[5] != container {
		t.Fatalf("container argument %q, want %q (quotes keep spaces and backslashes)", argv[5], container)
	}
	tmp := t.TempDir()
	msg := []byte(esia.SecretMessage("ESIA_BROKER", "openid fullname", "", "2026.12.01 10:00:00 +0300", "7c1e3b3e-3b1a-4c55-9b8e-3c0d3f0d9e11", redirect, ""))
	for _, tc := range []struct {
		name    string
		argv    []string
		reverse bool
		ok      bool
	}{
		{"files, reversed", argv, true, true},
		{"files, base64 output, reversed", append(slices.Clone(argv), "-base64"), true, true},
		{"files, not reversed", argv, false, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s := &esia.CommandSigner{Argv: tc.argv, Reverse: tc.reverse, Hash: gost.CertificateHash(cert), TempDir: tmp}
			sig, err := s.Sign(context.Background(), msg)
			if err != nil {
				t.Fatal(err)
			}
			if key.VerifyMessage(msg, sig) != tc.ok {
				t.Errorf("signature verifies = %v, want %v", !tc.ok, tc.ok)
			}
		})
	}
	if left, _ := os.ReadDir(tmp); len(left) != 0 {
		t.Errorf("the signer left %d files with the message or signature behind", len(left))
	}
	wrong := slices.Clone(argv)
	wrong[5] = `\\.\HDIMAGE\nosuch`
	_, err = (&esia.CommandSigner{Argv: wrong, Reverse: true}).Sign(context.Background(), msg)
	if err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("missing container: %v, want csptest's message", err)
	}
	// A command that writes nothing to {out} is an error, not an empty signature.
	_, err = (&esia.CommandSigner{Argv: []string{"true", "{in}", "{out}"}}).Sign(context.Background(), msg)
	if err == nil || !strings.Contains(err.Error(), "no signature file") {
		t.Errorf("no -out file: %v", err)
	}
}

func TestSplitCommand(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
		bad  bool
	}{
		{in: "openssl dgst -engine gost -md_gost12_256 -sign /etc/k.pem", want: []string{"openssl", "dgst", "-engine", "gost", "-md_gost12_256", "-sign", "/etc/k.pem"}},
		{in: `csptest -container '\\.\Aktiv Rutoken ECP 00 00\esia' -in {in}`, want: []string{"csptest", "-container", `\\.\Aktiv Rutoken ECP 00 00\esia`, "-in", "{in}"}},
		{in: `a "b c"  'd"e'`, want: []string{"a", "b c", `d"e`}},
		{in: `a ""`, want: []string{"a", ""}},
		{in: "  \t ", bad: true},
		{in: `a 'b`, bad: true},
	} {
		got, err := esia.SplitCommand(tc.in)
		if (err != nil) != tc.bad || (!tc.bad && !slices.Equal(got, tc.want)) {
			t.Errorf("SplitCommand(%q) = %q, %v; want %q, error %v", tc.in, got, err, tc.want, tc.bad)
		}
	}
}

// TestCommandSignerKeepsSecretsAndTime: a PIN given on the command line does not reach the error
// (a tool may echo its arguments), a quote error does not repeat the line, and a command whose
// child keeps the output open does not hold a login past the timeout.
func TestCommandSignerKeepsSecretsAndTime(t *testing.T) {
	msg := []byte("m")
	_, err := (&esia.CommandSigner{Argv: []string{"sh", "-c", `echo "using $2 $4" >&2; exit 1`, "sh", "-password", "Sup3rS3cretPIN", "-passin", "pass:0therPIN"}}).Sign(context.Background(), msg)
	if err == nil || strings.Contains(err.Error(), "Sup3rS3cretPIN") || strings.Contains(err.Error(), "0therPIN") || !strings.Contains(err.Error(), "using ***") {
		t.Errorf("error shows a secret, or not the tool's message: %v", err)
	}
	if _, err := esia.SplitCommand(`csptest -password 'Sup3rS3cretPIN`); err == nil || strings.Contains(err.Error(), "Sup3rS3cretPIN") {
		t.Errorf("quote error repeats the line: %v", err)
	}
	start := time.Now()
	_, err = (&esia.CommandSigner{Argv: []string{"sh", "-c", "sleep 6 & wait"}, Timeout: 500 * time.Millisecond}).Sign(context.Background(), msg)
	if err == nil || time.Since(start) > 3*time.Second {
		t.Errorf("a hung signer held the call %s: %v", time.Since(start), err)
	}
}
