package docker

import (
	"context"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// write is one acknowledged INSERT.
type write struct {
	node string
	at   time.Time
}

// writer inserts into both nodes every 50 ms over the replication network
// (the application's) and records every acknowledged write.
type writer struct {
	mu     sync.Mutex
	writes []write
	stop   chan struct{}
	done   sync.WaitGroup
}

func (c *cluster) startWriter() *writer {
	w := &writer{stop: make(chan struct{})}
	for _, node := range []string{"node1", "node2"} {
		conninfo := fmt.Sprintf("host=%s port=5432 user=postgres dbname=postgres sslmode=disable", c.ip(node, "replication"))
		w.done.Add(1)
		go w.loop(node, conninfo)
	}
	c.t.Cleanup(w.close)
	return w
}

func (w *writer) loop(node, conninfo string) {
	defer w.done.Done()
	writeEvery(w.stop, 200*time.Millisecond, 200*time.Millisecond, false,
		func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, conninfo) },
		func(ctx context.Context, conn *pgx.Conn) (string, error) {
			_, err := conn.Exec(ctx, "insert into writes (node) values ($1)", node)
			return node, err
		},
		func(wr write) {
			w.mu.Lock()
			w.writes = append(w.writes, wr)
			w.mu.Unlock()
		})
}

// writeEvery writes every 50 ms until stop is closed, each connect (when
// there is no connection) under connectTimeout and each write under
// writeTimeout, and passes each acknowledged write to acked.  After a failed write it
// reconnects when the connection broke or the write timed out, and, with
// reconnectOnError, after any error (as an application's pool does; the
// scenarios' writer keeps a session on a node that turned read-only, to
// see that it commits nothing more).
func writeEvery(stop <-chan struct{}, connectTimeout, writeTimeout time.Duration, reconnectOnError bool,
	connect func(context.Context) (*pgx.Conn, error),
	insert func(context.Context, *pgx.Conn) (node string, err error),
	acked func(write)) {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		select {
		case <-stop:
			return
		case <-tick.C:
		}
		if conn == nil {
			ctx, cancel := context.WithTimeout(context.Background(), connectTimeout)
			conn, _ = connect(ctx)
			cancel()
		}
		ctx, cancel := context.WithTimeout(context.Background(), writeTimeout)
		if conn != nil {
			if node, err := insert(ctx, conn); err == nil {
				acked(write{node, time.Now()})
			} else if reconnectOnError || conn.IsClosed() || ctx.Err() != nil {
				conn.Close(context.Background())
				conn = nil
			}
		}
		cancel()
	}
}

func (w *writer) close() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
		w.done.Wait()
	}
}

// report summarises the writes from the fault on: the first write the new
// primary took, the last the old one took, and whether they overlapped.
type report struct {
	firstNode2, lastNode1 time.Time
	node1After, node2     int
}

func (w *writer) report(fault time.Time) report {
	w.mu.Lock()
	defer w.mu.Unlock()
	var r report
	for _, wr := range w.writes {
		switch {
		case wr.node == "node2":
			r.node2++
			if r.firstNode2.IsZero() || wr.at.Before(r.firstNode2) {
				r.firstNode2 = wr.at
			}
		case wr.at.After(fault):
			r.node1After++
			if wr.at.After(r.lastNode1) {
				r.lastNode1 = wr.at
			}
		}
	}
	return r
}

// acked counts the writes node acknowledged.
func (w *writer) acked(node string) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, wr := range w.writes {
		if wr.node == node {
			n++
		}
	}
	return n
}

// overlap is how long both nodes accepted writes at once (0 if never).
func (r report) overlap() time.Duration {
	if r.firstNode2.IsZero() || r.lastNode1.IsZero() || r.lastNode1.Before(r.firstNode2) {
		return 0
	}
	return r.lastNode1.Sub(r.firstNode2)
}
