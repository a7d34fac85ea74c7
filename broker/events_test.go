package broker_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http/httptest"
	"net/url"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/esia-broker/esia-broker/storage"
	"github.com/esia-broker/esia-broker/storage/storagetest"
)

// TestEventFeedExactlyOnceAcrossReplicas: 8 writers on two replicas of one PostgreSQL make
// changes (4 through each broker's API, 4 straight on each replica's store with a pause between
// the event and the commit, the window in which a later id can commit first), while a consumer
// follows /api/v1/events through a balancer. It must see every event exactly once, with
// increasing ids.
func TestEventFeedExactlyOnceAcrossReplicas(t *testing.T) {
	dsn := storagetest.NewPostgresDSN(t)
	sA, sB := storagetest.Open(t, dsn), storagetest.Open(t, dsn)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	issuer := "http://" + l.Addr().String()
	a := newHarnessAt(t, sA, issuer, nil)
	b := newHarnessAt(t, sB, issuer, nil)
	ua, _ := url.Parse(a.Direct)
	ub, _ := url.Parse(b.Direct)
	lb := httptest.NewUnstartedServer(&roundRobin{backends: []*url.URL{ua, ub}, hits: map[string]int{}})
	lb.Listener.Close()
	lb.Listener = l
	lb.Start()
	t.Cleanup(lb.Close)
	a.client("diary", "diary-secret-secret", "roster:write", "events:read")

	ctx := context.Background()
	const writers, each = 8, 40
	if err := sA.UpsertSchool(ctx, "sch-e", "Школа"); err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{}
	for w := range writers {
		for i := range each {
			id := fmt.Sprintf("e-%d-%d", w, i)
			want[id] = true
			if _, err := sA.UpsertStudent(ctx, &storage.Student{ID: id, SchoolID: "sch-e", Class: "1А", FamilyName: "Тестов", GivenName: "Тест", Birthdate: "2015-01-01", Active: true}, nil); err != nil {
				t.Fatal(err)
			}
		}
	}
	roster := ccToken(t, lb.URL, "diary", "diary-secret-secret", "roster:write")
	feed := ccToken(t, lb.URL, "diary", "diary-secret-secret", "events:read")

	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				id := fmt.Sprintf("e-%d-%d", w, i)
				switch w % 4 {
				case 0, 1: // through the API of replica A or B
					base := []string{a.Direct, b.Direct}[w%2]
					code, _, body := apiCaller{t, base, nil}.do("DELETE", "/api/v1/students/"+id, roster, "")
					if code != 200 {
						errs <- fmt.Errorf("deactivate %s: %d %s", id, code, body)
					}
				default: // on the store of replica A or B, committing late
					s := []*storage.Store{sA, sB}[w%2]
					err := s.InTx(ctx, func(ctx context.Context) error {
						if _, err := s.SetStudentActive(ctx, id, false); err != nil {
							return err
						}
						time.Sleep(time.Duration(rand.IntN(8000)) * time.Microsecond)
						return nil
					})
					if err != nil {
						errs <- fmt.Errorf("deactivate %s: %w", id, err)
					}
				}
			}
		}()
	}
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()

	seen := map[string]int{}
	var last int64
	cursor := ""
	api := apiCaller{t, lb.URL, nil}
	finished := false
	deadline := time.Now().Add(90 * time.Second)
	for len(seen) < len(want) && time.Now().Before(deadline) {
		select {
		case <-done:
			finished = true
		default:
		}
		path := "/api/v1/events?limit=7"
		if cursor != "" {
			path += "&after=" + cursor
		}
		code, _, body := api.do("GET", path, feed, "")
		var page struct {
			Events []struct {
				ID        string `json:"id"`
				Type      string `json:"type"`
				StudentID string `json:"student_id"`
			} `json:"events"`
			Next string `json:"next"`
		}
		if code != 200 || json.Unmarshal(body, &page) != nil {
			t.Fatalf("events: %d %s", code, body)
		}
		for _, e := range page.Events {
			id, _ := strconv.ParseInt(e.ID, 10, 64)
			if id <= last {
				t.Fatalf("event %d after %d: not in order", id, last)
			}
			last = id
			if e.Type != storage.EventStudentDeactivated || !want[e.StudentID] {
				t.Fatalf("unexpected event %+v", e)
			}
			seen[e.StudentID]++
		}
		cursor = page.Next
		if len(page.Events) == 0 && finished {
			break
		}
	}
	<-done
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	// Whatever the consumer missed is still in the table: a skip is a lost event.
	missed := 0
	for id := range want {
		switch seen[id] {
		case 1:
		case 0:
			missed++
		default:
			t.Errorf("event of %s seen %d times", id, seen[id])
		}
	}
	if missed > 0 {
		t.Errorf("the consumer missed %d of %d events", missed, len(want))
	}
	t.Logf("%d events from %d writers on two replicas, each seen once, in order", len(seen), writers)
}
