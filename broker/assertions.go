package broker

import (
	"github.com/esia-broker/esia-broker/upstream"
	"github.com/esia-broker/esia-broker/upstream/esiaconn"
	"github.com/esia-broker/esia-broker/upstream/oidcconn"
)

// What the parts promise, checked when the package compiles.
var (
	_ upstream.Connector         = (*esiaconn.Connector)(nil)
	_ upstream.Connector         = (*oidcconn.Connector)(nil)
	_ upstream.Logout            = (*esiaconn.Connector)(nil)
	_ upstream.CertificateHolder = (*esiaconn.Connector)(nil)
	_ upstream.Observer          = (*esiaconn.Connector)(nil)
	_ upstream.Tracer            = (*esiaconn.Connector)(nil)
)
