package testwait

import (
	"testing"
	"time"
)

// fakeT records a Fatalf instead of ending the goroutine.
type fakeT struct {
	testing.TB
	failed bool
}

func (f *fakeT) Helper() {}
func (f *fakeT) Fatalf(string, ...any) {
	f.failed = true
}

func TestRecv(t *testing.T) {
	ch := make(chan int, 1)
	ch <- 7
	if v := Recv(t, ch, time.Second, "seven"); v != 7 {
		t.Errorf("got %d", v)
	}
	f := &fakeT{TB: t}
	start := time.Now()
	Recv(f, make(chan int), 50*time.Millisecond, "nothing")
	if !f.failed || time.Since(start) > time.Second {
		t.Errorf("an empty channel: failed=%v after %v", f.failed, time.Since(start))
	}
}

func TestUntil(t *testing.T) {
	n := 0
	Until(t, time.Second, "three polls", func() bool { n++; return n == 3 })
	if n != 3 {
		t.Errorf("polled %d times", n)
	}
	f := &fakeT{TB: t}
	Until(f, 30*time.Millisecond, "never", func() bool { return false })
	if !f.failed {
		t.Error("a condition that never holds did not fail")
	}
}
