package esiatest

import (
	"crypto/rand"
	"fmt"
	"time"

	"github.com/esia-broker/esia-broker/esia/gost"
)

// NewClientCredentials makes a GOST key on CryptoPro-A and a self-signed certificate for an
// information system, as `openssl genpkey -engine gost` and `openssl req -x509` would.
func NewClientCredentials(commonName string) (*gost.PrivateKey, []byte, error) {
	key, err := gost.GenerateKey(gost.CurveCryptoProA(), rand.Reader)
	if err != nil {
		return nil, nil, fmt.Errorf("esiatest: %w", err)
	}
	cert, err := gost.CreateSelfSignedCertificate(key, commonName, time.Now().Add(-time.Hour), time.Now().AddDate(3, 0, 0))
	if err != nil {
		return nil, nil, fmt.Errorf("esiatest: %w", err)
	}
	return key, cert, nil
}
