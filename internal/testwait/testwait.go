// Package testwait lets tests wait without hanging: a receive or a condition with a deadline
// that fails the test, saying what it waited for, instead of blocking until the suite's timeout.
package testwait

import (
	"testing"
	"time"
)

// Recv receives from ch, or fails the test after d.
func Recv[T any](t testing.TB, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case v := <-ch:
		return v
	case <-timer.C:
		t.Fatalf("waited %v for %s", d, what)
	}
	var zero T
	return zero
}

// Until polls cond every 10 ms until it holds, or fails the test after d.
func Until(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("waited %v for %s", d, what)
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
}
