package broker

import (
	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"
)

// What the parts promise, checked when the package compiles.
var (
	_ Connector                   = (*ESIAConnector)(nil)
	_ Connector                   = (*OIDCConnector)(nil)
	_ upstreamLogout              = (*ESIAConnector)(nil)
	_ certificateHolder           = (*ESIAConnector)(nil)
	_ fosite.TokenEndpointHandler = (*keyGrantHandler)(nil)
	_ jwt.Signer                  = (*tokenSigner)(nil)
)
