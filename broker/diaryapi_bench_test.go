package broker_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// benchStores runs a benchmark on the embedded store and on PostgreSQL.
func benchStores(b *testing.B, fn func(b *testing.B, s *storage.Store)) {
	b.Run("sqlite", func(b *testing.B) { fn(b, openSQLite(b)) })
	b.Run("postgres", func(b *testing.B) { fn(b, storagetest.Open(b, storagetest.NewPostgresDSN(b))) })
}

// BenchmarkDiaryAPIInviteIssue: a class teacher's diary rotates the parent codes of a class
// of 30 through POST /api/v1/invites; reports codes issued per second.
func BenchmarkDiaryAPIInviteIssue(b *testing.B) {
	benchStores(b, func(b *testing.B, s *storage.Store) {
		ctx := context.Background()
		h := newHarness(b, s)
		h.client("teacher-app", "teacher-secret-secret", "invites:write")
		if err := s.UpsertSchool(ctx, "sch-b", "Школа"); err != nil {
			b.Fatal(err)
		}
		for i := range 30 {
			if _, err := s.UpsertStudent(ctx, &storage.Student{ID: fmt.Sprintf("b-%d", i), SchoolID: "sch-b", Class: "5А", FamilyName: "Тестов", GivenName: "Тест", Birthdate: "2015-01-01", Active: true}, nil); err != nil {
				b.Fatal(err)
			}
		}
		tok := ccToken(b, h.URL, "teacher-app", "teacher-secret-secret", "invites:write")
		api := apiCaller{b, h.URL, nil}
		b.ResetTimer()
		start := time.Now()
		for b.Loop() {
			if code, _, body := api.do("POST", "/api/v1/invites", tok, `{"school_id":"sch-b","class":"5А","role":"parent","rotate":true}`); code != 201 {
				b.Fatalf("issue: %d %s", code, body)
			}
		}
		b.ReportMetric(float64(30*b.N)/time.Since(start).Seconds(), "codes/s")
	})
}

// BenchmarkDiaryAPIEventsRead: a diary follows GET /api/v1/events 100 at a time over 20,000
// events; reports pages and events read per second.
func BenchmarkDiaryAPIEventsRead(b *testing.B) {
	benchStores(b, func(b *testing.B, s *storage.Store) {
		ctx := context.Background()
		h := newHarness(b, s)
		h.client("diary", "diary-secret-secret", "events:read")
		const total = 20000
		err := s.InTx(ctx, func(ctx context.Context) error {
			for i := range total {
				if err := s.AppendEvent(ctx, storage.Event{Type: storage.EventLinkCreated, StudentID: fmt.Sprintf("s-%d", i%500), AccountID: "a-1",
					Data: map[string]any{"link_id": fmt.Sprint(i), "relation": "parent", "method": "snils"}}); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			b.Fatal(err)
		}
		tok := ccToken(b, h.URL, "diary", "diary-secret-secret", "events:read")
		api := apiCaller{b, h.URL, nil}
		after, pages := 0, 0
		b.ResetTimer()
		start := time.Now()
		for b.Loop() {
			if code, _, body := api.do("GET", fmt.Sprintf("/api/v1/events?after=%d&limit=100", after), tok, ""); code != 200 {
				b.Fatalf("events: %d %s", code, body)
			}
			pages++
			after = (after + 100) % (total - 100)
		}
		secs := time.Since(start).Seconds()
		b.ReportMetric(float64(pages)/secs, "pages/s")
		b.ReportMetric(float64(pages*100)/secs, "events/s")
	})
}
