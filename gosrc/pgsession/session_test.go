package pgsession

import (
	"context"
	"fmt"
	"net"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

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
	s, err := New(fmt.Sprintf("host=127.0.0.1 port=%d user=x dbname=y sslmode=disable", ln.Addr().(*net.TCPAddr).Port), ApplicationName)
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
	_, err := New("host=a port=x password=Pw123456", ApplicationName)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "Pw123456")
}
