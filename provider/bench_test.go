package provider

import (
	"context"
	"testing"
	"time"

	"github.com/ory/fosite"
	"github.com/ory/fosite/token/jwt"

	"github.com/esia-broker/esia-broker/signing"
	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func benchKeys(b *testing.B) *signing.KeySet {
	s := storagetest.Open(b, storagetest.NewSQLiteDSN(b))
	ks, err := signing.NewKeySet(s, signing.KeySetOptions{MasterKey: []byte("benchmark-master-key-32-bytes!!!"), Reload: time.Hour, Overlap: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	if err := ks.Ensure(context.Background(), "RS256", "ES256"); err != nil {
		b.Fatal(err)
	}
	return ks
}

// BenchmarkTokenSigning signs an ID-token-sized set of claims with each algorithm.
func BenchmarkTokenSigning(b *testing.B) {
	ks := benchKeys(b)
	claims := jwt.MapClaims{"iss": "https://id.example", "sub": "b7b03f96-0edc-4309-9cb3-a900a10cff56", "aud": []string{"kiasuo"},
		"exp": time.Now().Add(time.Hour).Unix(), "iat": time.Now().Unix(), "name": "Иванова Мария Петровна",
		"students": []StudentClaim{{ID: "s-1", SchoolID: "sch-1", Class: "7А", Relation: "parent", Name: "Иванов Алексей Игоревич"}}}
	for _, alg := range []string{"RS256", "ES256"} {
		b.Run(alg, func(b *testing.B) {
			s := signing.NewSigner(ks, alg)
			ctx := context.Background()
			for b.Loop() {
				if _, _, err := s.Generate(ctx, claims, &jwt.Headers{}); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkClaimBuilding builds the profile claims and puts them into a session.
func BenchmarkClaimBuilding(b *testing.B) {
	sub := "1000300001"
	a := &storage.Account{ID: "b7b03f96", FamilyName: "Иванова", GivenName: "Мария", MiddleName: "Петровна", Birthdate: "1985-03-04", Upstream: "esia", UpstreamSub: &sub}
	bs := &storage.BrowserSession{AuthTime: time.Now(), AMRJSON: `["esia"]`}
	client := &storage.Client{ID: "kiasuo"}
	scopes := fosite.Arguments{"openid", "profile", "students"}
	links := map[string]any{"students": []StudentClaim{{ID: "s-1"}, {ID: "s-2"}}, "roles": []string{"parent"}}
	for b.Loop() {
		s := userSession(a, a.ID, bs, client, scopes, time.Now(), "RS256", "")
		applyClaims(s, profileClaims(a, scopes), links)
	}
}
