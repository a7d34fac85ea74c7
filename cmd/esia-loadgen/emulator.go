package main

import (
	"context"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/esia/gost"
)

// emulator serves the ESIA emulator in its own process, so that the load benchmark measures the
// broker's CPU alone. It writes into -dir the broker's GOST client key and certificate (made
// once) and the certificate of its own token key (new at every start), for the broker's
// upstream.esia.key_file, cert_file and verify_cert_files.
func emulator(ctx context.Context, args []string) error { return emulatorOn(ctx, args, nil) }

// emulatorOn is emulator serving ln when it is not nil (tests hand over a listener they hold)
// instead of listening on -listen.
func emulatorOn(ctx context.Context, args []string, ln net.Listener) error {
	fs := flag.NewFlagSet("emulator", flag.ContinueOnError)
	listen := fs.String("listen", "127.0.0.1:18090", "address to serve on")
	dir := fs.String("dir", ".", "folder for client-key.pem, client-cert.pem and esia-cert.pem")
	clientID := fs.String("client-id", "ESIA_BROKER_BENCH", "the broker's ESIA client id")
	redirect := fs.String("redirect-uri", "http://127.0.0.1:18080/esia/callback", "the broker's ESIA callback")
	population := fs.Int("population", 50000, "answer at once as a random member of a population of this size (0: persona page)")
	skipSig := fs.Bool("skip-signature-checks", false, "do not verify the broker's client secrets")
	inOrder := fs.Bool("in-order-first", false, "hand out every population member once, in order, before drawing at random")
	tokenAlg := fs.String("token-alg", esia.AlgGOST, "how tokens are signed: GOST3410_2012_256 or RS256")
	if err := fs.Parse(args); err != nil {
		return err
	}
	certDER, err := clientCredentials(*dir, *clientID)
	if err != nil {
		return err
	}
	emu, err := esiatest.New(esiatest.Options{TokenAlg: *tokenAlg, RandomPopulation: *population, InOrderFirst: *inOrder, SkipSignatureChecks: *skipSig,
		Clients: []esiatest.Client{{ID: *clientID, CertDER: certDER, RedirectURIs: []string{*redirect},
			Scopes: []string{"openid", "fullname", "birthdate", "gender", "snils", "email", "mobile", "contacts", "kid_fullname", "kid_birthdate", "kid_snils"}}}})
	if err != nil {
		return err
	}
	tokenCert, err := emu.TokenCertificatePEM()
	if err != nil {
		return err
	}
	if err := writeFileAtomic(filepath.Join(*dir, "esia-cert.pem"), tokenCert); err != nil {
		return err
	}
	if ln == nil {
		if ln, err = net.Listen("tcp", *listen); err != nil {
			return fmt.Errorf("listen on %s: %w", *listen, err)
		}
	}
	srv := &http.Server{Handler: emu.Handler(), ReadHeaderTimeout: 10 * time.Second}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(shut)
	}()
	fmt.Fprintf(os.Stderr, "esia-loadgen: ESIA emulator on http://%s (tokens %s, signature checks %s)\n", ln.Addr(), *tokenAlg, map[bool]string{true: "skipped", false: "on"}[*skipSig])
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	return nil
}

// clientCredentials returns the broker's client certificate from dir, making key and
// certificate first when they are not there.
func clientCredentials(dir, clientID string) ([]byte, error) {
	keyPath, certPath := filepath.Join(dir, "client-key.pem"), filepath.Join(dir, "client-cert.pem")
	if b, err := os.ReadFile(certPath); err == nil {
		c, err := gost.ParseCertificatePEM(b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", certPath, err)
		}
		return c.Raw, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read %s: %w", certPath, err)
	}
	key, cert, err := esiatest.NewClientCredentials(strings.ToUpper(clientID))
	if err != nil {
		return nil, err
	}
	der, err := gost.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	if err := writeFileAtomic(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert})); err != nil {
		return nil, err
	}
	return cert, nil
}

// writeFileAtomic writes through a temporary file and a rename, so a reader never sees half.
func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
