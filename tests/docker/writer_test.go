package docker

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"
)

// write is one acknowledged INSERT.
type write struct {
	node string
	at   time.Time
	id   int64 // the row's id, for the scenarios' writer (0 otherwise)
}

// writer inserts into both nodes every 50 ms over the replication network
// (the application's) and records every acknowledged write.
type writer struct {
	next   atomic.Int64 // the last id written
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
	var id int64 // the id of the write in flight (insert and acked run in turn)
	writeEvery(w.stop, 200*time.Millisecond, 200*time.Millisecond, false,
		func(ctx context.Context) (*pgx.Conn, error) { return pgx.Connect(ctx, conninfo) },
		func(ctx context.Context, conn *pgx.Conn) (string, error) {
			id = w.next.Add(1)
			_, err := conn.Exec(ctx, "insert into writes (node, id) values ($1, $2)", node, id)
			return node, err
		},
		func(wr write) {
			wr.id = id
			w.mu.Lock()
			w.writes = append(w.writes, wr)
			w.mu.Unlock()
		})
}

// missingOn counts the writes the writer saw acknowledged (by either node)
// whose rows node does not have.
func (w *writer) missingOn(c *cluster, node string) int {
	w.mu.Lock()
	ids := make([]string, 0, len(w.writes))
	for _, wr := range w.writes {
		ids = append(ids, strconv.FormatInt(wr.id, 10))
	}
	w.mu.Unlock()
	if len(ids) == 0 {
		return 0
	}
	out := c.psql(node, "postgres", "select count(*) from unnest(array["+strings.Join(ids, ",")+
		"]::bigint[]) a(id) where not exists (select from writes w where w.id = a.id)")
	n, err := strconv.Atoi(out)
	require.NoError(c.t, err, out)
	return n
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
				acked(write{node: node, at: time.Now()})
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
