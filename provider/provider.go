// Package provider is the OAuth 2.0 and OpenID Connect side of the broker: fosite composed over
// the store, the token session and its claims, the activation-key grant, client authentication,
// the subjects diaries see, and the protocol endpoints (discovery, JWKS, token, revocation,
// introspection, userinfo, pushed authorization requests).
package provider

import (
	"net/http"
	"strings"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/compose"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/handler/openid"
	"github.com/ory/fosite/token/hmac"
	"github.com/ory/fosite/token/jwt"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/signing"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/web"
)

// Options are what a Provider is built from.
type Options struct {
	Kit      *web.Kit
	Config   *config.Config
	Store    *storage.Store
	Keys     *signing.KeySet
	Linker   *linking.Service
	Subjects *Subjects
	// TokenKey is fosite's HMAC key of opaque tokens and codes; KeyDigestKey keys the digests
	// of activation keys.
	TokenKey, KeyDigestKey []byte
	// Calendar is the day ages are reckoned on.
	Calendar func() time.Time
}

// Provider is the OpenID provider: fosite (embedded) with the broker's own checks around it.
type Provider struct {
	*web.Kit
	fosite.OAuth2Provider
	cfg          *config.Config
	store        *storage.Store
	keys         *signing.KeySet
	idSigner     *signing.Signer
	clientAuth   clientAuthentication
	subjects     *Subjects
	linker       *linking.Service
	keyDigestKey []byte
	calendar     func() time.Time
}

// New composes fosite over the store with the broker's strategies and grants.
func New(o Options) (*Provider, error) {
	cfg := o.Config
	issuer := strings.TrimSuffix(cfg.Issuer, "/")
	fc := &fosite.Config{
		AccessTokenLifespan:            cfg.Tokens.AccessTokenLifespan,
		RefreshTokenLifespan:           cfg.Tokens.RefreshTokenLifespan,
		AuthorizeCodeLifespan:          cfg.Tokens.AuthCodeLifespan,
		IDTokenLifespan:                cfg.Tokens.IDTokenLifespan,
		IDTokenIssuer:                  issuer,
		AccessTokenIssuer:              issuer,
		TokenURL:                       issuer + "/oauth2/token",
		GlobalSecret:                   o.TokenKey,
		EnforcePKCEForPublicClients:    true,
		EnablePKCEPlainChallengeMethod: false,
		ScopeStrategy:                  fosite.ExactScopeStrategy,
		AudienceMatchingStrategy:       fosite.DefaultAudienceMatchingStrategy,
		JWTScopeClaimKey:               jwt.JWTScopeFieldString,
		ClientSecretsHasher:            sha256Hasher{},
		SendDebugMessagesToClients:     false,
		MinParameterEntropy:            8,
		RefreshTokenScopes:             []string{"offline_access"},
		TokenEntropy:                   32,
		// RFC 9126: a pushed request lives 90 s and is used once (the store deletes it).
		PushedAuthorizeRequestURIPrefix: PARURIPrefix,
		PushedAuthorizeContextLifespan:  90 * time.Second,
	}
	hmacStrategy := oauth2.NewHMACSHAStrategy(&hmac.HMACStrategy{Config: fc}, fc)
	var core oauth2.CoreStrategy = hmacStrategy
	if cfg.Tokens.AccessTokenFormat == "jwt" {
		core = &oauth2.DefaultJWTStrategy{Signer: signing.NewSigner(o.Keys, cfg.Tokens.AccessTokenAlg), HMACSHAStrategy: hmacStrategy, Config: fc}
	}
	idSigner := signing.NewSigner(o.Keys, cfg.Tokens.IDTokenAlg)
	strategy := &compose.CommonStrategy{
		CoreStrategy:               core,
		OpenIDConnectTokenStrategy: &openid.DefaultStrategy{Signer: idSigner, Config: fc},
		Signer:                     idSigner,
	}
	p := &Provider{Kit: o.Kit, cfg: cfg, store: o.Store, keys: o.Keys, idSigner: idSigner, subjects: o.Subjects, linker: o.Linker,
		keyDigestKey: o.KeyDigestKey, calendar: o.Calendar}
	if p.calendar == nil {
		p.calendar = time.Now
	}
	keyGrant := func(config fosite.Configurator, _ any, _ any) any {
		return &keyGrantHandler{p: p, strategy: core, storage: o.Store, config: config}
	}
	p.OAuth2Provider = compose.Compose(fc, o.Store, strategy,
		keyGrant,
		compose.OAuth2AuthorizeExplicitFactory,
		compose.OAuth2ClientCredentialsGrantFactory,
		compose.OAuth2RefreshTokenGrantFactory,
		compose.OAuth2TokenIntrospectionFactory,
		compose.OAuth2TokenRevocationFactory,
		compose.OAuth2PKCEFactory,
		compose.OpenIDConnectExplicitFactory,
		compose.OpenIDConnectRefreshFactory,
		compose.PushedAuthorizeHandlerFactory,
	)
	// A client's private_key_jwt assertion names the broker as its audience by the token
	// endpoint (OpenID Connect Core §9) or by the issuer (RFC 7523 §3; what FAPI 2 and most
	// libraries send): both are accepted, at every endpoint that authenticates clients.
	f, ok := p.OAuth2Provider.(*fosite.Fosite)
	if !ok {
		return nil, errNoFosite
	}
	f.Config = assertionAudiences{Config: fc, urls: []string{issuer + "/oauth2/token", issuer}}
	p.clientAuth = clientAuthentication{f: f, now: time.Now}
	fc.ClientAuthenticationStrategy = p.clientAuth.authenticate
	return p, nil
}

// Signer is the signer of ID tokens (and of logout tokens, with the same keys).
func (p *Provider) Signer() *signing.Signer { return p.idSigner }

// Subjects are the subs the diaries see.
func (p *Provider) Subjects() *Subjects { return p.subjects }

// Mount mounts the protocol endpoints.
func (p *Provider) Mount(rt web.Router) {
	pages := func() int { return p.cfg.Limits.PagesPerIPPerMinute }
	rt.Handle("/.well-known/openid-configuration", "discovery", p.discovery, http.MethodGet, http.MethodHead)
	rt.Handle("/oauth2/jwks", "jwks", p.jwks, http.MethodGet, http.MethodHead)
	rt.Limited("/oauth2/par", "par", pages, p.pushedAuthorize, http.MethodPost)
	rt.Limited("/oauth2/token", "token", func() int { return p.cfg.Limits.TokenPerIPPerMinute }, p.token, http.MethodPost)
	rt.Handle("/oauth2/revoke", "revoke", p.revoke, http.MethodPost)
	rt.Handle("/oauth2/introspect", "introspect", p.introspect, http.MethodPost)
	rt.Handle("/oauth2/userinfo", "userinfo", p.userinfo, http.MethodGet, http.MethodPost)
}
