package esiaconn

import (
	"context"
	"errors"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/esia-broker/esia-broker/esia"
	"github.com/esia-broker/esia-broker/upstream"
)

// probeClient is an esiaClient whose Probe answers what a test sets, counting the calls.
type probeClient struct {
	esiaClient
	answer *esia.Error
	err    error
	calls  atomic.Int32
}

func (p *probeClient) Probe(context.Context) (*esia.Error, error) {
	p.calls.Add(1)
	return p.answer, p.err
}

// TestConfirmRefusal: a configuration fault on the redirect back alarms the operator only when
// ESIA refuses a fresh request of the broker's too; forged callbacks, however many, cost at most
// one probe a minute.
func TestConfirmRefusal(t *testing.T) {
	for _, tc := range []struct {
		name   string
		answer *esia.Error
		err    error
		alarm  bool
	}{
		{"ESIA refuses the broker too", esia.NewError("access_denied", "ESIA-007053: client_secret", 0), nil, true},
		{"ESIA takes the broker's request", nil, nil, false},
		{"ESIA unreachable", nil, esia.ErrUnavailable, false},
		{"ESIA refuses for another reason", esia.NewError("access_denied", "ESIA-007004", 0), nil, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pc := &probeClient{answer: tc.answer, err: tc.err}
			c := &Connector{client: pc}
			var wg sync.WaitGroup
			var alarms atomic.Int32
			for range 50 {
				wg.Add(1)
				go func() {
					defer wg.Done()
					r := httptest.NewRequest("GET", "/esia/callback?error=access_denied&error_description=ESIA-007053%3A+x", nil)
					_, err := c.HandleCallback(context.Background(), r, "")
					var ue *upstream.Error
					if !errors.As(err, &ue) {
						t.Errorf("not an upstream error: %v", err)
						return
					}
					if ue.Kind == upstream.Misconfigured && ue.Operator != "" {
						alarms.Add(1)
					} else if ue.Kind != upstream.RefusedUnverified || ue.Code != "ESIA-007053" {
						t.Errorf("unconfirmed refusal: kind %d, code %q", ue.Kind, ue.Code)
					}
				}()
			}
			wg.Wait()
			if got := alarms.Load() == 50; got != tc.alarm || (!tc.alarm && alarms.Load() != 0) {
				t.Errorf("%d of 50 alarmed, want all=%v", alarms.Load(), tc.alarm)
			}
			if pc.calls.Load() != 1 {
				t.Errorf("%d probes for 50 callbacks, want 1", pc.calls.Load())
			}
		})
	}
}
