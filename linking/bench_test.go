package linking_test

import (
	"context"
	"strings"
	"testing"

	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

func BenchmarkSNILSDigest(b *testing.B) {
	d := linking.NewDigester([]byte("bench-pepper-bench-pepper-bench-"))
	for b.Loop() {
		if _, err := d.SNILS("112-233-445 95"); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkResolve is one linking resolution at login (two children by guardian SNILS, nothing
// to change) on each store.
func BenchmarkResolve(b *testing.B) {
	for name, open := range storagetest.Dialects() {
		b.Run(name, func(b *testing.B) {
			s := open(b)
			d := linking.NewDigester([]byte("bench-pepper-bench-pepper-bench-"))
			svc := linking.NewService(s, d, invites.NewService(s, d.InviteKey(), invites.DefaultLimits()))
			ctx := context.Background()
			for _, id := range []string{"sch-1", "sch-2"} {
				if err := s.UpsertSchool(ctx, id, id); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := svc.Import(ctx, strings.NewReader(roster), linking.ImportOptions{}); err != nil {
				b.Fatal(err)
			}
			acct := mustAccount(b, s, "1000300001")
			for b.Loop() {
				if _, err := svc.Resolve(ctx, acct, "112-233-445 95"); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
