package broker

import (
	"context"
	"net/url"

	"github.com/google/uuid"

	"github.com/esia-broker/esia-broker/storage"
)

// The sub a diary sees (tokens.subject): the account id (uuid, the default), the ESIA oid
// (esia_oid), or a per-sector function of the oid (pairwise, OpenID Connect Core §8.1). Inside
// the broker the subject stays the account id: sessions, grants, logouts and the audit know the
// account by it. Children's sub-accounts, which have no oid, keep their account id.

// subjectFor is the sub of account a in the tokens of the client with this id and these
// redirect URIs.
func (b *Broker) subjectFor(a *storage.Account, clientID string, redirectURIs []string) string {
	if a.Kind != "esia" || a.Upstream != storage.ESIAUpstream || a.UpstreamSub == nil || *a.UpstreamSub == "" {
		return a.ID
	}
	switch b.cfg.Tokens.Subject {
	case "esia_oid":
		return *a.UpstreamSub
	case "pairwise":
		return b.linker.Digester().PairwiseSubject(b.sector(clientID, redirectURIs), *a.UpstreamSub)
	}
	return a.ID
}

// sector is the client's pairwise sector: the configured one (clients of one vendor share it),
// or the host of its first redirect URI, or its id.
func (b *Broker) sector(clientID string, redirectURIs []string) string {
	if s, ok := b.sectors[clientID]; ok {
		return "name:" + s
	}
	if len(redirectURIs) > 0 {
		if u, err := url.Parse(redirectURIs[0]); err == nil && u.Hostname() != "" {
			return "host:" + u.Hostname()
		}
	}
	return "client:" + clientID
}

// subjectForClient is subjectFor with the client read from the store (logout tokens).
func (b *Broker) subjectForClient(ctx context.Context, a *storage.Account, clientID string) (string, error) {
	if b.cfg.Tokens.Subject == "uuid" || b.cfg.Tokens.Subject == "" {
		return a.ID, nil
	}
	c, err := b.store.Client(ctx, clientID)
	if err != nil {
		return "", err
	}
	return b.subjectFor(a, c.ID, c.RedirectURIs), nil
}

// hintAccount returns the account id an ID token of this broker names by its sub and sid, as
// the diary clientID saw it; "" when it names no live account.
func (b *Broker) hintAccount(ctx context.Context, sub, sid, clientID string) string {
	if sub == "" {
		return ""
	}
	if b.cfg.Tokens.Subject == "uuid" || b.cfg.Tokens.Subject == "" {
		if _, err := uuid.Parse(sub); err == nil {
			return sub // the account id itself
		}
	}
	var a *storage.Account
	var err error
	switch {
	case sid != "":
		var id string
		if id, err = b.store.AccountBySID(ctx, sid); err == nil {
			a, err = b.store.Account(ctx, id)
		}
	case oidLike(sub):
		a, err = b.store.AccountByUpstream(ctx, storage.ESIAUpstream, sub)
	default:
		return ""
	}
	if err != nil {
		return ""
	}
	// The token may be older than the setting: any sub this account has had for the client.
	if sub == a.ID || (a.UpstreamSub != nil && a.Kind == "esia" && a.Upstream == storage.ESIAUpstream && sub == *a.UpstreamSub) {
		return a.ID
	}
	c, err := b.store.Client(ctx, clientID)
	if err == nil && a.Kind == "esia" && a.Upstream == storage.ESIAUpstream && a.UpstreamSub != nil &&
		sub == b.linker.Digester().PairwiseSubject(b.sector(c.ID, c.RedirectURIs), *a.UpstreamSub) {
		return a.ID
	}
	return ""
}

// subjectType names tokens.subject as discovery does (subject_types_supported).
func subjectType(subject string) string {
	if subject == "pairwise" {
		return "pairwise"
	}
	return "public"
}

// oidLike tells whether sub may be an ESIA oid (digits).
func oidLike(sub string) bool {
	if sub == "" || len(sub) > 20 {
		return false
	}
	for _, r := range sub {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
