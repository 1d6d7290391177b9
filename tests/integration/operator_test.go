package integration

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/pg-keeper-go/pg_keeper_go/internal/testcert"
	"github.com/pg-keeper-go/pg_keeper_go/tests/pgtest"
)

const operatorToken = "0123456789-operator-token"

// startOperatorAPI turns n's operator API on (HTTPS, a bearer token) and
// returns its address and the certificates.
func startOperatorAPI(t *testing.T, n *pgtest.Node) (string, testcert.Files) {
	t.Helper()
	dir := filepath.Join(n.Dir, "operator")
	require.NoError(t, os.Mkdir(dir, 0o755))
	certs, err := testcert.Write(dir)
	require.NoError(t, err)
	tokenPath := filepath.Join(dir, "token")
	require.NoError(t, os.WriteFile(tokenPath, []byte(operatorToken), 0o600))
	for _, f := range []string{certs.ServerCert, certs.ServerKey, certs.CA, tokenPath} {
		require.NoError(t, n.Own(f))
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := l.Addr().String()
	require.NoError(t, l.Close())
	for k, v := range map[string]string{"operator_address": addr, "operator_tls_cert_file": certs.ServerCert,
		"operator_tls_key_file": certs.ServerKey, "operator_token_file": tokenPath} {
		n.AlterSystem(t, "pg_keeper."+k, pgtest.Quote(v))
	}
	n.Reload(t)
	n.WaitLog(t, "pg_keeper_go: operator API (HTTPS) listening on "+addr, 10*time.Second)
	return addr, certs
}

// TestTheOperatorAPIPausesAndSwitchesOverOverTLS turns the operator API on
// on both nodes (HTTPS, a bearer token), pauses and resumes both nodes
// and switches over through it; a request without the token changes
// nothing, and the primary's API sends a switchover to the standby's.
func TestTheOperatorAPIPausesAndSwitchesOverOverTLS(t *testing.T) {
	p := startPair(t, nil)
	primaryAddr, certs := startOperatorAPI(t, p.primary)
	standbyAddr, standbyCerts := startOperatorAPI(t, p.standby)
	certs.Pool.AppendCertsFromPEM(mustRead(t, standbyCerts.CA))
	const token = operatorToken

	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: certs.Pool}}}
	post := func(addr, path, bearer string) (int, string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, "https://"+addr+path, nil)
		require.NoError(t, err)
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}

	code, body := post(primaryAddr, "/pause", "")
	assert.Equal(t, http.StatusUnauthorized, code, body)
	code, body = post(standbyAddr, "/switchover", "not-the-token-at-all")
	assert.Equal(t, http.StatusUnauthorized, code, body)

	code, body = post(primaryAddr, "/pause", token)
	require.Equal(t, http.StatusOK, code, body)
	assert.Equal(t, 2, strings.Count(body, ": paused\n"), body)
	waitPaused(t, p.standby, true)
	code, body = post(standbyAddr, "/switchover", token)
	assert.Equal(t, http.StatusConflict, code, body)
	assert.Contains(t, body, "is paused")
	code, body = post(primaryAddr, "/resume", token)
	require.Equal(t, http.StatusOK, code, body)
	waitPaused(t, p.primary, false)

	code, body = post(primaryAddr, "/switchover", token)
	assert.Equal(t, http.StatusConflict, code, body)
	assert.Contains(t, body, "POST /switchover to the standby's operator API")
	code, body = post(primaryAddr, "/switchover?dry_run=true", token)
	assert.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, "would become the primary; nothing changed")

	code, body = post(standbyAddr, "/switchover", token)
	require.Equal(t, http.StatusOK, code, body)
	t.Logf("POST /switchover:\n%s", body)
	assert.Contains(t, body, fmt.Sprintf("switchover: done: 127.0.0.1:%d is the primary on timeline 2", p.standby.Port))
	p.waitState(t, p.standby, "primary", "connected", 20*time.Second)
	p.waitState(t, p.primary, "standby", "connected", 20*time.Second)
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return b
}
