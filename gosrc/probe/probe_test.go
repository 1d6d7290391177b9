package probe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/keeper"
)

func TestServerErrorsMeanThePartnerIsAlive(t *testing.T) {
	tests := []struct {
		name  string
		err   error
		alive bool
	}{
		{"a wrong password", &pgconn.PgError{Code: "28P01"}, true},
		{"too many connections", fmt.Errorf("connect: %w", &pgconn.PgError{Code: "53300"}), true},
		{"an administrator shutdown", &pgconn.PgError{Code: "57P01"}, false},
		{"a crash shutdown", &pgconn.PgError{Code: "57P02"}, false},
		{"a server still starting up", &pgconn.PgError{Code: "57P03"}, false},
		{"a refused connection", errors.New("dial tcp: connection refused"), false},
		{"a deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var answered *keeper.AnsweredError
			assert.Equal(t, tt.alive, errors.As(classify(tt.err), &answered))
			assert.ErrorIs(t, classify(tt.err), tt.err, "the cause stays reachable")
		})
	}
	assert.NoError(t, classify(nil))
}

func TestSessionNeverWaitsLongerThanTheContext(t *testing.T) {
	// A loopback listener that accepts and never answers: a hung server.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	s, err := NewSession(fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=y sslmode=disable", ln.Addr().(*net.TCPAddr).Port))
	require.NoError(t, err)
	assert.Equal(t, ApplicationName, s.cfg.RuntimeParams["application_name"])

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	var one int
	err = s.QueryRow(ctx, "select 1", &one)
	require.Error(t, err)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 2*time.Second, "the deadline bounds connect and query")
}

func TestInvalidConninfoIsRefusedWithoutItsPassword(t *testing.T) {
	_, err := NewSession("host=a port=x password=Pw123456")
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "Pw123456")
}
