package linking

import (
	"context"
	"errors"
	"time"
)

// ErrBusy is returned when more passwords are waiting to be hashed than the gate admits: the
// person is asked to try again in a few seconds instead of the process growing without bound.
var ErrBusy = errors.New("too many password checks at once; try again shortly")

// hashGate bounds the argon2 computations that run at once (each takes the configured memory)
// and the requests that may wait for one; past the queue, or after waiting too long, a request
// gets ErrBusy at once.
type hashGate struct {
	slots chan struct{}
	queue chan struct{}
	wait  time.Duration
}

func newHashGate(concurrent, queued int, wait time.Duration) *hashGate {
	concurrent = max(concurrent, 1)
	return &hashGate{slots: make(chan struct{}, concurrent), queue: make(chan struct{}, concurrent+max(queued, 0)), wait: wait}
}

// acquire waits for a slot; release gives it back.
func (g *hashGate) acquire(ctx context.Context) (release func(), err error) {
	select {
	case g.queue <- struct{}{}:
	default:
		return nil, ErrBusy
	}
	t := time.NewTimer(g.wait)
	defer t.Stop()
	select {
	case g.slots <- struct{}{}:
		return func() { <-g.slots; <-g.queue }, nil
	case <-t.C:
		<-g.queue
		return nil, ErrBusy
	case <-ctx.Done():
		<-g.queue
		return nil, ctx.Err()
	}
}
