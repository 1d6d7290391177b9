package keeper

import (
	"fmt"
	"sync"

	"golang.org/x/sys/unix"
)

// waker lets goroutines wake the main loop: the host waits on its eventfd
// together with the latch.  Work for the main goroutine travels with it.
type waker struct {
	efd    int
	mu     sync.Mutex
	posted []func()
}

func newWaker() (*waker, error) {
	fd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("create eventfd: %w", err)
	}
	return &waker{efd: fd}, nil
}

func (w *waker) fd() int { return w.efd }

// wake makes the descriptor readable; safe from any goroutine.
func (w *waker) wake() {
	var one = [8]byte{1}
	_, _ = unix.Write(w.efd, one[:])
}

// drain makes the descriptor unreadable again.
func (w *waker) drain() {
	var buf [8]byte
	_, _ = unix.Read(w.efd, buf[:])
}

// post queues fn for the main goroutine and wakes it.
func (w *waker) post(fn func()) {
	w.mu.Lock()
	w.posted = append(w.posted, fn)
	w.mu.Unlock()
	w.wake()
}

// take returns and clears the queued functions.
func (w *waker) take() []func() {
	w.mu.Lock()
	defer w.mu.Unlock()
	fns := w.posted
	w.posted = nil
	return fns
}

// close releases the descriptor.  Goroutines still running may call wake
// after it; the write then fails harmlessly or hits a reused descriptor
// number only in a process that is exiting.
func (w *waker) close() { _ = unix.Close(w.efd) }
