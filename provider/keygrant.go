package provider

import (
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/esia-broker/esia-broker/clientip"
	"github.com/esia-broker/esia-broker/invites"
	store "github.com/esia-broker/esia-broker/storage"
	"github.com/ory/fosite"
	"github.com/ory/fosite/handler/oauth2"
	"github.com/ory/fosite/storage"
)

// GrantTypeActivationKey is the token-endpoint grant with which the regional Gosuslugi mobile
// app exchanges an activation key (shown on the account page) for tokens.
const GrantTypeActivationKey = "urn:esia-broker:params:oauth:grant-type:activation-key"

// ActivationKeyLength is the number of symbols in a key: 16 × 5 = 80 bits.
const ActivationKeyLength = 16

// keyGrantHandler implements the activation-key grant as a fosite token-endpoint handler.
type keyGrantHandler struct {
	p        *Provider
	strategy oauth2.CoreStrategy
	storage  interface {
		oauth2.AccessTokenStorage
		oauth2.RefreshTokenStorage
	}
	config interface {
		fosite.AccessTokenLifespanProvider
		fosite.RefreshTokenLifespanProvider
	}
}

type requestIPKey struct{}

// CanHandleTokenEndpointRequest takes the activation-key grant.
func (h *keyGrantHandler) CanHandleTokenEndpointRequest(_ context.Context, r fosite.AccessRequester) bool {
	return r.GetGrantTypes().ExactOne(GrantTypeActivationKey)
}

// CanSkipClientAuth: the app authenticates as its client.
func (h *keyGrantHandler) CanSkipClientAuth(context.Context, fosite.AccessRequester) bool {
	return false
}

// HandleTokenEndpointRequest spends the key, within its attempt limit, and builds the session.
func (h *keyGrantHandler) HandleTokenEndpointRequest(ctx context.Context, r fosite.AccessRequester) error {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	p := h.p
	client := r.GetClient()
	if !client.GetGrantTypes().Has(GrantTypeActivationKey) || p.cfg.Activation.ClientID == "" || client.GetID() != p.cfg.Activation.ClientID {
		return fosite.ErrUnauthorizedClient.WithHint("This client may not use activation keys.")
	}
	ip, _ := ctx.Value(requestIPKey{}).(string)
	limit := store.LimitKey{Key: "key:" + client.GetID() + ":" + clientip.Key(ip),
		Limit: store.AttemptLimit{Max: p.cfg.Activation.FailuresPerIP, Window: p.cfg.Activation.Window, Lockout: p.cfg.Activation.Lockout}}
	// The attempt is reserved before the key is looked up: concurrent guesses count one by one.
	if until, err := p.store.ReserveAttempt(ctx, limit); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	} else if !until.IsZero() {
		p.Metrics.Lockouts.WithLabelValues("activation").Inc()
		p.Metrics.Keys.WithLabelValues("refused").Inc()
		return fosite.ErrInvalidGrant.WithHint("Too many wrong activation keys; try again later.")
	}
	norm, err := invites.NormalizeLen(r.GetRequestForm().Get("activation_key"), ActivationKeyLength)
	var key *store.ActivationKey
	if err == nil {
		key, err = p.store.UseActivationKey(ctx, invites.Digest(p.keyDigestKey, norm), client.GetID(), r.GetID())
	}
	if err != nil {
		if _, ferr := p.store.Failed(ctx, limit); ferr != nil {
			return fosite.ErrServerError.WithWrap(ferr)
		}
		if aerr := p.store.Audit(ctx, "client:"+client.GetID(), "key.redeem_failed", "", nil); aerr != nil {
			return fosite.ErrServerError.WithWrap(aerr)
		}
		p.Metrics.Keys.WithLabelValues("refused").Inc()
		if errors.Is(err, store.ErrKeyInvalid) || errors.Is(err, invites.ErrCodeFormat) {
			return fosite.ErrInvalidGrant.WithHint("The activation key is unknown, used or expired.")
		}
		return fosite.ErrServerError.WithWrap(err)
	}
	account, err := p.store.Account(ctx, key.AccountID)
	if err != nil || p.AccountMayUse(ctx, account) != nil {
		p.Metrics.Keys.WithLabelValues("refused").Inc()
		return fosite.ErrInvalidGrant.WithHint("The account of this key is not active.")
	}
	p.Metrics.Keys.WithLabelValues("used").Inc()
	for _, s := range r.GetRequestedScopes() {
		if client.GetScopes().Has(s) {
			r.GrantScope(s)
		}
	}
	if client.GetScopes().Has("offline_access") {
		r.GrantScope("offline_access")
	}
	r.GrantAudience(client.GetID())
	now := time.Now().UTC()
	bs := &store.BrowserSession{AccountID: account.ID, AuthTime: now, AMRJSON: `["key"]`, ACR: "key"}
	sess := userSession(account, p.SubjectFor(account, client.GetID(), client.GetRedirectURIs()), bs, &store.Client{ID: client.GetID()}, r.GetGrantedScopes(), now, p.cfg.Tokens.IDTokenAlg, "")
	links, err := p.LinkClaims(ctx, account, r.GetGrantedScopes(), "")
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	applyClaims(sess, profileClaims(account, r.GetGrantedScopes()), links)
	sess.SetExpiresAt(fosite.AccessToken, now.Add(h.config.GetAccessTokenLifespan(ctx)).Round(time.Second))
	sess.SetExpiresAt(fosite.RefreshToken, now.Add(h.config.GetRefreshTokenLifespan(ctx)).Round(time.Second))
	r.SetSession(sess)
	return p.store.Audit(ctx, "account:"+account.ID, "key.redeem", key.ID, map[string]any{"client": client.GetID()})
}

// PopulateTokenEndpointResponse issues the tokens of a spent key.
func (h *keyGrantHandler) PopulateTokenEndpointResponse(ctx context.Context, r fosite.AccessRequester, resp fosite.AccessResponder) (err error) {
	if !h.CanHandleTokenEndpointRequest(ctx, r) {
		return fosite.ErrUnknownRequest
	}
	access, accessSig, err := h.strategy.GenerateAccessToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	refresh, refreshSig, err := h.strategy.GenerateRefreshToken(ctx, r)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	ctx, err = storage.MaybeBeginTx(ctx, h.storage)
	if err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	defer func() {
		if err != nil {
			_ = storage.MaybeRollbackTx(ctx, h.storage)
		}
	}()
	stored := r.Sanitize(nil)
	if err = h.storage.CreateAccessTokenSession(ctx, accessSig, stored); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err = h.storage.CreateRefreshTokenSession(ctx, refreshSig, accessSig, stored); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	if err = storage.MaybeCommitTx(ctx, h.storage); err != nil {
		return fosite.ErrServerError.WithWrap(err)
	}
	resp.SetAccessToken(access)
	resp.SetTokenType("bearer")
	resp.SetExpiresIn(time.Until(r.GetSession().GetExpiresAt(fosite.AccessToken)).Round(time.Second))
	resp.SetScopes(r.GetGrantedScopes())
	resp.SetExtra("refresh_token", refresh)
	return nil
}

// withClientIP puts the request's address into the context the grant handler sees.
func (p *Provider) withClientIP(r *http.Request) context.Context {
	return context.WithValue(r.Context(), requestIPKey{}, p.ClientIP(r))
}
