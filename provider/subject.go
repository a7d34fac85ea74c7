package provider

import (
	"context"
	"fmt"
	"maps"
	"net/url"
	"slices"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/google/uuid"
)

// The sub a diary sees (tokens.subject): the account id (uuid, the default), the ESIA oid
// (esia_oid), or a per-sector function of the oid (pairwise, OpenID Connect Core §8.1). Inside
// the broker the subject stays the account id: sessions, grants, logouts and the audit know the
// account by it. Children's sub-accounts, which have no oid, keep their account id.
// Subjects makes the sub each diary sees.
type Subjects struct {
	mode        string
	sectorsText string
	sectors     map[string]string // client id → sector (tokens.pairwise_sectors)
	oidUpstream string            // the connector whose subjects are ESIA oids
	digester    *linking.Digester
}

// The settings a server records for the admin commands (storage.RecordSetting).
const (
	settingSubject     = "tokens.subject"
	settingSectors     = "tokens.pairwise_sectors"
	settingOIDUpstream = "tokens.oid_upstream"
)

// NewSubjects reads tokens.subject and tokens.pairwise_sectors; oidUpstream is the connector
// whose subjects are ESIA oids (esia, or a gateway's); d keys pairwise subjects.
func NewSubjects(t config.Tokens, oidUpstream string, d *linking.Digester) (*Subjects, error) {
	sectors, err := t.SectorMap()
	if err != nil {
		return nil, fmt.Errorf("tokens.pairwise_sectors: %w", err)
	}
	mode := t.Subject
	if mode == "" {
		mode = "uuid"
	}
	return &Subjects{mode: mode, sectorsText: t.PairwiseSectors, sectors: sectors, oidUpstream: oidUpstream, digester: d}, nil
}

// Record records the setting in the store, for the admin commands (SubjectsOfServer).
func (s *Subjects) Record(ctx context.Context, store *storage.Store) error {
	for name, v := range map[string]string{settingSubject: s.mode, settingSectors: s.sectorsText, settingOIDUpstream: s.oidUpstream} {
		if err := store.RecordSetting(ctx, name, v); err != nil {
			return err
		}
	}
	return nil
}

// SubjectsOfServer is the setting the server recorded in the store (Record), or, when none is
// recorded yet, own. differs tells that the server's differs from own: an admin command follows
// the server's, so that the logouts it queues carry the sub the diaries saw.
func SubjectsOfServer(ctx context.Context, store *storage.Store, own *Subjects) (s *Subjects, differs bool, err error) {
	mode, ok, err := store.Setting(ctx, settingSubject)
	if err != nil || !ok {
		return own, false, err
	}
	sectors, _, err := store.Setting(ctx, settingSectors)
	if err != nil {
		return nil, false, err
	}
	up, _, err := store.Setting(ctx, settingOIDUpstream)
	if err != nil {
		return nil, false, err
	}
	s, err = NewSubjects(config.Tokens{Subject: mode, PairwiseSectors: sectors}, up, own.digester)
	if err != nil {
		return nil, false, fmt.Errorf("the server's recorded setting: %w", err)
	}
	return s, s.mode != own.mode || s.sectorsText != own.sectorsText || s.oidUpstream != own.oidUpstream, nil
}

// Install makes the logouts store queues carry the sub each diary saw (storage.SetShownSubject):
// every process that may end sessions — the server and the admin commands — installs it.
func (s *Subjects) Install(store *storage.Store) {
	if s.mode == "uuid" {
		return
	}
	store.SetShownSubject(func(a *storage.Account, c *storage.Client) string { return s.For(a, c.ID, c.RedirectURIs) })
}

// oidOf returns the ESIA oid of an account the setting applies to: one of the connector whose
// subjects are ESIA oids ("" for any other: a child's sub-account, another connector's, or one
// whose oid is gone).
func (s *Subjects) oidOf(a *storage.Account) string {
	if a.Kind != "esia" || a.Upstream != s.oidUpstream || a.UpstreamSub == nil {
		return ""
	}
	return *a.UpstreamSub
}

// For is the sub of account a in the tokens of the client with this id and these redirect URIs.
func (s *Subjects) For(a *storage.Account, clientID string, redirectURIs []string) string {
	oid := s.oidOf(a)
	if oid == "" {
		return a.ID
	}
	switch s.mode {
	case "esia_oid":
		return oid
	case "pairwise":
		return s.digester.PairwiseSubject(s.sector(clientID, redirectURIs), oid)
	}
	return a.ID
}

// Had tells whether sub is one this account has had for the client under any setting: a token
// may be older than a change of tokens.subject.
func (s *Subjects) Had(a *storage.Account, clientID string, redirectURIs []string, sub string) bool {
	if sub == a.ID {
		return true
	}
	oid := s.oidOf(a)
	return oid != "" && (sub == oid || sub == s.digester.PairwiseSubject(s.sector(clientID, redirectURIs), oid))
}

// sector is the client's pairwise sector: the configured one (clients of one vendor share it),
// or the host of its first redirect URI, or its id.
func (s *Subjects) sector(clientID string, redirectURIs []string) string {
	if name, ok := s.sectors[clientID]; ok {
		return "name:" + name
	}
	if len(redirectURIs) > 0 {
		if u, err := url.Parse(redirectURIs[0]); err == nil && u.Hostname() != "" {
			return "host:" + u.Hostname()
		}
	}
	return "client:" + clientID
}

// SubjectFor is Subjects.For of the broker's setting.
func (p *Provider) SubjectFor(a *storage.Account, clientID string, redirectURIs []string) string {
	return p.subjects.For(a, clientID, redirectURIs)
}

// SubjectForClient is subjectFor with the client read from the store (logout tokens).
func (p *Provider) SubjectForClient(ctx context.Context, a *storage.Account, clientID string) (string, error) {
	if p.subjects.mode == "uuid" {
		return a.ID, nil
	}
	c, err := p.store.Client(ctx, clientID)
	if err != nil {
		return "", err
	}
	return p.SubjectFor(a, c.ID, c.RedirectURIs), nil
}

// HintAccount returns the account id an ID token of this broker names by its sub and sid, as
// the diary clientID saw it; "" when it names no live account.
func (p *Provider) HintAccount(ctx context.Context, sub, sid, clientID string) string {
	if sub == "" {
		return ""
	}
	if p.subjects.mode == "uuid" {
		if _, err := uuid.Parse(sub); err == nil {
			return sub // the account id itself
		}
	}
	var a *storage.Account
	var err error
	switch {
	case sid != "":
		var id string
		if id, err = p.store.AccountBySID(ctx, sid); err == nil {
			a, err = p.store.Account(ctx, id)
		}
	case oidLike(sub):
		a, err = p.store.AccountByUpstream(ctx, p.subjects.oidUpstream, sub)
	default:
		return ""
	}
	if err != nil {
		return ""
	}
	c, err := p.store.Client(ctx, clientID)
	if err != nil {
		return ""
	}
	if !p.subjects.Had(a, c.ID, c.RedirectURIs, sub) {
		return ""
	}
	return a.ID
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

// Mode is tokens.subject: uuid, esia_oid or pairwise.
func (s *Subjects) Mode() string { return s.mode }

// SectorClients are the clients tokens.pairwise_sectors names, sorted.
func (s *Subjects) SectorClients() []string {
	return slices.Sorted(maps.Keys(s.sectors))
}
