package probe

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// hedged runs attempt on the first session and, if it has not returned
// halfway to ctx's deadline, on the second session too (a fresh
// connection: on a lossy link its packets are lost independently of the
// first's, and TCP waits a second before it sends a lost SYN again).  The
// first good answer wins; a server's error is an answer too.  An attempt
// that fails before the second starts (a refused connection) is the
// result at once.  It returns when both attempts have returned (the loser
// is cancelled), so that neither session is ever used by two goroutines,
// and says whether the second session won.
func hedged[T any](ctx context.Context, first, second *pgsession.Session, attempt func(context.Context, *pgsession.Session) (T, error)) (T, bool, error) {
	type result struct {
		v      T
		err    error
		second bool
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan result, 2)
	run := func(s *pgsession.Session, isSecond bool) {
		go func() {
			r := result{second: isSecond, err: errors.New("check panicked")}
			defer func() {
				if p := recover(); p != nil {
					r.err = fmt.Errorf("check panicked: %v", p)
				}
				results <- r
			}()
			r.v, r.err = attempt(ctx, s)
		}()
	}
	run(first, false)
	running := 1
	var hedge <-chan time.Time
	if dl, ok := ctx.Deadline(); ok && second != nil {
		t := time.NewTimer(time.Until(dl) / 2)
		defer t.Stop()
		hedge = t.C
	}
	var firstErr error // the first attempt's failure while the second runs
	for {
		select {
		case <-hedge:
			hedge = nil
			run(second, true)
			running++
		case r := <-results:
			running--
			var answered *AnsweredError
			lost := r.err != nil && !errors.As(r.err, &answered)
			if lost && running > 0 {
				if !r.second {
					firstErr = r.err
				}
				continue // the other attempt may still get an answer
			}
			if lost && firstErr != nil {
				r.err = firstErr // says more than a hedge's own timeout
			}
			cancel()
			for ; running > 0; running-- {
				<-results
			}
			return r.v, r.second && r.err == nil, r.err
		}
	}
}
