package probe

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/stretchr/testify/assert"
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
		{"a server still starting up", &pgconn.PgError{Code: "57P03", Message: "the database system is starting up"}, false},
		{"the gate of a fenced partner", &pgconn.PgError{Code: "57P03", Message: "pg_keeper_go: this node is fenced and takes no connections"}, true},
		{"the gate of a pending partner", fmt.Errorf("connect: %w", &pgconn.PgError{Code: "57P03", Message: "pg_keeper_go: this node takes no connections until its keeper has checked the partner"}), true},
		{"a refused connection", errors.New("dial tcp: connection refused"), false},
		{"a deadline", context.DeadlineExceeded, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var answered *AnsweredError
			assert.Equal(t, tt.alive, errors.As(classify(tt.err), &answered))
			assert.ErrorIs(t, classify(tt.err), tt.err, "the cause stays reachable")
		})
	}
	assert.NoError(t, classify(nil))
}
