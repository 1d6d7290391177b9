package api

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"
)

// serving is one http.Server that runs: its listener and the end of its
// accept loop.  Server and OperatorServer each have one.
type serving struct {
	mu       sync.Mutex
	srv      *http.Server
	listener net.Listener
	served   chan struct{} // closed when the accept loop has returned
}

// start listens on addr and serves srv there in a goroutine, with TLS when
// srv.TLSConfig is set, at most maxConns connections at once.  Errors of
// the accept loop (and a panic in it) go to onError, named by what.  A
// listen error is returned; start may be called once.
func (v *serving) start(addr string, srv *http.Server, maxConns int, onError func(error), what string) error {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.srv != nil {
		return fmt.Errorf("%s: already started", what)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: listen on %q: %w", what, addr, err)
	}
	v.srv, v.listener, v.served = srv, ln, make(chan struct{})
	lim, served := newLimitListener(ln, maxConns), v.served
	go func() {
		defer close(served)
		defer func() {
			if r := recover(); r != nil {
				onError(fmt.Errorf("%s: panic in the accept loop: %v", what, r))
			}
		}()
		var err error
		if srv.TLSConfig != nil {
			err = srv.ServeTLS(lim, "", "")
		} else {
			err = srv.Serve(lim)
		}
		if err != nil && !errors.Is(err, http.ErrServerClosed) {
			onError(fmt.Errorf("%s: serve on %s: %w", what, ln.Addr(), err))
		}
	}()
	return nil
}

// addr returns the address listened on (with the port the system chose
// for ":0"), or "" before start.
func (v *serving) addr() string {
	v.mu.Lock()
	defer v.mu.Unlock()
	if v.listener == nil {
		return ""
	}
	return v.listener.Addr().String()
}

// shutdown stops accepting connections and waits for the requests in
// flight until ctx ends, then closes the rest and returns ctx's error.
// Before start it does nothing.
func (v *serving) shutdown(ctx context.Context, what string) error {
	v.mu.Lock()
	srv, served := v.srv, v.served
	v.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	if err != nil {
		srv.Close()
		err = fmt.Errorf("%s: shutdown: %w", what, err)
	}
	<-served
	return err
}
