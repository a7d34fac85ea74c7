package backchannel

import (
	"log/slog"
	"net/http"
	"strings"

	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
)

// Sender delivers the queued back-channel logouts.
type Sender struct {
	store        *storage.Store
	provider     *provider.Provider
	log          *slog.Logger
	metrics      *web.Metrics
	issuer       string
	logoutClient *http.Client
}

// New makes a Sender that signs with p's keys and names the subs p's diaries see.
func New(store *storage.Store, p *provider.Provider, issuer string, log *slog.Logger, m *web.Metrics) *Sender {
	issuer = strings.TrimSuffix(issuer, "/")
	return &Sender{store: store, provider: p, log: log, metrics: m, issuer: issuer, logoutClient: newLogoutClient(issuer)}
}
