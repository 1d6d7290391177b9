package api

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/internal/testcert"
)

// fakeOperator records what the operator API asked for.
type fakeOperator struct {
	mu    sync.Mutex
	calls []string
	err   error
	block chan struct{} // when set, Switchover waits for it
}

func (f *fakeOperator) SetPause(_ context.Context, pause bool, say func(string)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, map[bool]string{true: "pause", false: "resume"}[pause])
	say("db1:5432: paused")
	return f.err
}

func (f *fakeOperator) Switchover(_ context.Context, dryRun bool, say func(string)) error {
	if f.block != nil {
		<-f.block
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.calls = append(f.calls, map[bool]string{true: "switchover dry run", false: "switchover"}[dryRun])
	say("switchover: done")
	return f.err
}

func startOperator(t *testing.T, cfg OperatorConfig, op Operator) (string, testcert.Files) {
	t.Helper()
	certs, err := testcert.Write(t.TempDir())
	require.NoError(t, err)
	cfg.Addr, cfg.CertFile, cfg.KeyFile = "127.0.0.1:0", certs.ServerCert, certs.ServerKey
	if cfg.ClientCAFile == "ca" {
		cfg.ClientCAFile = certs.CA
	}
	s, err := NewOperator(cfg, op, nil)
	require.NoError(t, err)
	require.NoError(t, s.Start())
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return "https://" + s.Addr(), certs
}

func call(t *testing.T, client *http.Client, method, url, token string) (int, string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, method, url, nil)
	require.NoError(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func tokenFile(t *testing.T, token string) string {
	path := filepath.Join(t.TempDir(), "token")
	require.NoError(t, os.WriteFile(path, []byte(token+"\n"), 0o600))
	return path
}

func TestTheOperatorAPIServesOnlyAuthenticatedPOSTsOverTLS(t *testing.T) {
	const token = "s3cret-token-0123456789"
	op := &fakeOperator{}
	url, certs := startOperator(t, OperatorConfig{TokenFile: tokenFile(t, token), ClientCAFile: "ca"}, op)
	anon := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	cert, err := certs.Client()
	require.NoError(t, err)
	withCert := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool, Certificates: []tls.Certificate{cert}}}}

	code, body := call(t, anon, http.MethodPost, url+"/pause", "")
	assert.Equal(t, http.StatusUnauthorized, code, body)
	code, _ = call(t, anon, http.MethodPost, url+"/pause", "wrong-token-0123456789")
	assert.Equal(t, http.StatusUnauthorized, code)
	code, _ = call(t, anon, http.MethodGet, url+"/pause", token)
	assert.Equal(t, http.StatusMethodNotAllowed, code)
	assert.Empty(t, op.calls, "nothing ran without authentication or with GET")

	code, body = call(t, anon, http.MethodPost, url+"/pause", token)
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, "db1:5432: paused\n", body)
	code, _ = call(t, withCert, http.MethodPost, url+"/resume", "")
	assert.Equal(t, http.StatusOK, code, "a client certificate signed by the CA is enough")
	code, _ = call(t, withCert, http.MethodPost, url+"/switchover?dry_run=true", "")
	assert.Equal(t, http.StatusOK, code)
	assert.Equal(t, []string{"pause", "resume", "switchover dry run"}, op.calls)

	op.err = errors.New("refused: db2:5432 is paused")
	code, body = call(t, withCert, http.MethodPost, url+"/switchover", "")
	assert.Equal(t, http.StatusConflict, code)
	assert.Equal(t, "switchover: done\nerror: refused: db2:5432 is paused\n", body)

	// Plain HTTP gets no answer from the API.
	resp, err := http.Post(strings.Replace(url, "https://", "http://", 1)+"/pause", "text/plain", nil)
	if err == nil {
		assert.NotEqual(t, http.StatusOK, resp.StatusCode)
		resp.Body.Close()
	}
}

func TestTheOperatorAPIRunsOneOperationAtATime(t *testing.T) {
	const token = "s3cret-token-0123456789"
	op := &fakeOperator{block: make(chan struct{})}
	url, certs := startOperator(t, OperatorConfig{TokenFile: tokenFile(t, token)}, op)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	done := make(chan int)
	go func() { code, _ := call(t, client, http.MethodPost, url+"/switchover", token); done <- code }()
	require.Eventually(t, func() bool {
		code, _ := call(t, client, http.MethodPost, url+"/pause", token)
		return code == http.StatusConflict
	}, 5*time.Second, 10*time.Millisecond)
	close(op.block)
	assert.Equal(t, http.StatusOK, <-done)
}

func TestTheOperatorAPIRefusesToServeWithoutTLSOrAuthentication(t *testing.T) {
	certs, err := testcert.Write(t.TempDir())
	require.NoError(t, err)
	_, err = NewOperator(OperatorConfig{Addr: ":0", TokenFile: tokenFile(t, "s3cret-token-0123456789")}, &fakeOperator{}, nil)
	assert.ErrorContains(t, err, "serves HTTPS only")
	_, err = NewOperator(OperatorConfig{Addr: ":0", CertFile: certs.ServerCert, KeyFile: certs.ServerKey}, &fakeOperator{}, nil)
	assert.ErrorContains(t, err, "every request must authenticate")
	_, err = NewOperator(OperatorConfig{Addr: ":0", CertFile: certs.ServerCert, KeyFile: certs.ServerKey, TokenFile: tokenFile(t, "short")}, &fakeOperator{}, nil)
	assert.ErrorContains(t, err, "shorter than 16 characters")
}
