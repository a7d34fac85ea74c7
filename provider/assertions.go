package provider

import (
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/esia-broker/esia-broker/signing"
)

// What the parts promise fosite, checked when the package compiles.
var (
	_ fosite.TokenEndpointHandler = (*keyGrantHandler)(nil)
	_ jwt.Signer                  = (*signing.Signer)(nil)
	_ fosite.Session              = (*Session)(nil)
)
