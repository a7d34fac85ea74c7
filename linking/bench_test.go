package linking_test

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/esia/esiatest"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/regionimport"
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

// BenchmarkRegionImport is a region's move-in (issue 22's measure): 10,000 links by ESIA oid
// (5,000 parents with two children each, all awaiting their first login) and 2,000 children's
// logins, half bcrypt and half PBKDF2, each into a fresh store with its roster already there.
func BenchmarkRegionImport(b *testing.B) {
	const students, childLogins = 10_000, 2_000
	var rosterCSV, linksCSV, childrenCSV strings.Builder
	rosterCSV.WriteString("student_id,school_id,class,family_name,given_name,middle_name,birthdate,snils,active\n")
	linksCSV.WriteString("esia_oid,student_id,relation,linked_at,method\n")
	childrenCSV.WriteString("student_id,login,password_hash,guardian_esia_oid\n")
	const bcryptHash = "$2a$10$N9qo8uLOickgx2ZMRZoMyeIjZAgcfl7p92ldGxad68LJZdL17lhWy"
	const pbkdf2Hash = "pbkdf2_sha256$260000$Zm9vYmFyc2FsdA$DI9174Jn/0hAOvCMsIq8fKpGIHjk9sxXiotD7YZj3j4="
	for i := range students {
		// The first 2,000 are 9 on the test day; the rest 16.
		born := "2017-03-03"
		if i >= childLogins {
			born = "2010-03-03"
		}
		fmt.Fprintf(&rosterCSV, "s-%05d,sch-1,%dА,Фамилия,Имя,,%s,,1\n", i, 1+i%11, born)
		fmt.Fprintf(&linksCSV, "%d,s-%05d,parent,2020-09-01,invite\n", 7000000000+i/2, i)
		if i < childLogins {
			h := bcryptHash
			if i%2 == 1 {
				h = pbkdf2Hash
			}
			fmt.Fprintf(&childrenCSV, "s-%05d,child.%05d,%s,%d\n", i, i, h, 7000000000+i/2)
		}
	}
	roster := day(rosterCSV.String())
	for name, open := range storagetest.Dialects() {
		b.Run(name, func(b *testing.B) {
			var linksTook, childrenTook time.Duration
			n := 0
			for b.Loop() {
				b.StopTimer()
				s := open(b)
				d := linking.NewDigester([]byte("bench-pepper-bench-pepper-bench-"))
				svc := linking.NewService(s, d, invites.NewService(s, d.InviteKey(), invites.DefaultLimits()))
				svc.SetClock(esiatest.TestDay)
				ctx := context.Background()
				if err := s.UpsertSchool(ctx, "sch-1", "sch-1"); err != nil {
					b.Fatal(err)
				}
				if _, err := svc.Import(ctx, strings.NewReader(roster), linking.ImportOptions{}); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				start := time.Now()
				rep, err := regionimport.New(s, svc).ImportLinks(ctx, strings.NewReader(linksCSV.String()), regionimport.ImportFileOptions{})
				if err != nil || rep.Created != students {
					b.Fatalf("links: %v %+v", err, rep.Errors[:min(len(rep.Errors), 3)])
				}
				linksTook += time.Since(start)
				start = time.Now()
				rep, err = regionimport.New(s, svc).ImportChildren(ctx, strings.NewReader(childrenCSV.String()), regionimport.ImportFileOptions{})
				if err != nil || rep.Created != childLogins {
					b.Fatalf("children: %v %+v", err, rep)
				}
				childrenTook += time.Since(start)
				n++
			}
			b.ReportMetric(linksTook.Seconds()/float64(n), "s/10k-links")
			b.ReportMetric(childrenTook.Seconds()/float64(n), "s/2k-children")
		})
	}
}
