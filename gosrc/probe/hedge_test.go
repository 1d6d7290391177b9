package probe

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/gosrc/pgsession"
)

// twoSessions are two sessions that never connect: the attempts below
// tell them apart by pointer.
func twoSessions(t *testing.T) (*pgsession.Session, *pgsession.Session) {
	a, err := pgsession.New("host=192.0.2.1", "test")
	require.NoError(t, err)
	b, err := pgsession.New("host=192.0.2.1", "test")
	require.NoError(t, err)
	return a, b
}

// behaviour answers an attempt on one session.
type behaviour func(ctx context.Context) (string, error)

func answers(v string) behaviour {
	return func(context.Context) (string, error) { return v, nil }
}

func hangs(ctx context.Context) (string, error) { <-ctx.Done(); return "", ctx.Err() }

var errRefusedHere = errors.New("connect: connection refused")

func refused(context.Context) (string, error) { return "", errRefusedHere }

// runHedged runs hedged with a deadline of 200 ms; the attempts behave as
// given on the first and the second session.  It also returns how many
// attempts started and how many were still running when hedged returned.
func runHedged(t *testing.T, first, second behaviour) (string, bool, error, int32, int32) {
	a, b := twoSessions(t)
	var started, running atomic.Int32
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	v, won, err := hedged(ctx, a, b, func(ctx context.Context, s *pgsession.Session) (string, error) {
		started.Add(1)
		running.Add(1)
		defer running.Add(-1)
		if s == a {
			return first(ctx)
		}
		return second(ctx)
	})
	return v, won, err, started.Load(), running.Load()
}

func TestAHedgedCheckAnsweredAtOnceAsksOnce(t *testing.T) {
	v, won, err, started, _ := runHedged(t, answers("first"), answers("second"))
	require.NoError(t, err)
	assert.Equal(t, "first", v)
	assert.False(t, won)
	assert.Equal(t, int32(1), started)
}

func TestAHedgedCheckAsksASecondSessionWhenTheFirstIsSilent(t *testing.T) {
	v, won, err, started, running := runHedged(t, hangs, answers("second"))
	require.NoError(t, err)
	assert.Equal(t, "second", v)
	assert.True(t, won, "the second session answered")
	assert.Equal(t, int32(2), started)
	assert.Zero(t, running, "the silent attempt was cancelled and has returned")
}

func TestARefusedCheckIsNotHedged(t *testing.T) {
	_, _, err, started, _ := runHedged(t, refused, answers("second"))
	assert.ErrorIs(t, err, errRefusedHere, "a refusal is the partner's answer")
	assert.Equal(t, int32(1), started)
}

func TestAServerErrorEndsAHedgedCheck(t *testing.T) {
	answered := &AnsweredError{Err: errors.New("password authentication failed")}
	_, _, err, _, running := runHedged(t, hangs, func(context.Context) (string, error) { return "", answered })
	assert.ErrorAs(t, err, &answered)
	assert.Zero(t, running)
}

func TestAHedgedCheckWithNoAnswerFailsWithTheFirstError(t *testing.T) {
	_, won, err, started, running := runHedged(t, hangs, hangs)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.False(t, won)
	assert.Equal(t, int32(2), started)
	assert.Zero(t, running)

	// The second fails, the first still answers in time.
	v, won, err, _, _ := runHedged(t, after(150*time.Millisecond, "first", nil), refused)
	require.NoError(t, err)
	assert.Equal(t, "first", v)
	assert.False(t, won)

	// The first fails after the second started: its error is the result
	// when the second finds no answer either.
	_, _, err, _, _ = runHedged(t, after(150*time.Millisecond, "", errRefusedHere), hangs)
	assert.ErrorIs(t, err, errRefusedHere)
}

// after answers v and err after d, unless the attempt is cancelled first.
func after(d time.Duration, v string, err error) behaviour {
	return func(ctx context.Context) (string, error) {
		select {
		case <-time.After(d):
			return v, err
		case <-ctx.Done():
			return "", ctx.Err()
		}
	}
}
