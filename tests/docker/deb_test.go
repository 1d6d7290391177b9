package docker

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// suites are the Debian suites the project builds each major on
// (Makefile, suite_NN).
var suites = map[string]string{"13": "bullseye", "15": "bookworm", "17": "trixie", "18": "sid"}

// TestTheDebianPackagesInstallWithAptAndPassTheRegressSuite installs
// dist/postgresql-NN-pg-keeper-go and dist/pg-keeper-go (make deb-NN) with
// apt into a clean container of the major's Debian suite, which fetches
// PostgreSQL itself from Debian, and runs the regress suite against what
// the packages installed.
func TestTheDebianPackagesInstallWithAptAndPassTheRegressSuite(t *testing.T) {
	m := major()
	ext, _ := filepath.Glob(filepath.Join(repoRoot(), "dist", fmt.Sprintf("postgresql-%s-pg-keeper-go_*.deb", m)))
	cli, _ := filepath.Glob(filepath.Join(repoRoot(), "dist", "pg-keeper-go_*.deb"))
	if len(ext) != 1 || len(cli) != 1 {
		t.Skipf("no single package pair for PostgreSQL %s in dist/ (make deb-%s): %v %v", m, m, ext, cli)
	}
	suite := suites[m]
	require.NotEmpty(t, suite, "no Debian suite for PostgreSQL %s", m)
	if out, err := exec.Command("docker", "image", "inspect", "debian:"+suite).CombinedOutput(); err != nil {
		t.Skipf("image debian:%s not found (make image-%s): %s", suite, m, firstLine(string(out)))
	}
	aptOpts := ""
	if suite == "sid" {
		aptOpts = "-o Acquire::Check-Valid-Until=false" // as the Makefile's apt_opts_18
	}
	script := fmt.Sprintf(`set -e
mkdir -p /etc/postgresql-common/createcluster.d
echo "create_main_cluster = false" > /etc/postgresql-common/createcluster.d/test.conf
printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
apt-get %[1]s update -qq
DEBIAN_FRONTEND=noninteractive apt-get %[1]s install -y -qq --no-install-recommends /debs/%[2]s /debs/%[3]s >/dev/null
echo "== installed"
dpkg -L postgresql-%[4]s-pg-keeper-go pg-keeper-go | grep -E 'pg_keeper_go(_core)?\.so|\.control|/bin/|rules'
pg_keeper_go --help >/dev/null
PG_MAJOR=%[4]s REGRESS_DIR=/regress /regress.sh
`, aptOpts, filepath.Base(ext[0]), filepath.Base(cli[0]), m)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, "docker", "run", "--rm",
		"-v", filepath.Dir(ext[0])+":/debs:ro",
		"-v", filepath.Join(repoRoot(), "tests", "regress")+":/regress:ro",
		"-v", filepath.Join(repoRoot(), "docker", "regress.sh")+":/regress.sh:ro",
		"debian:"+suite, "bash", "-c", script).CombinedOutput()
	require.NoError(t, err, "%s", out)
	for _, path := range []string{
		fmt.Sprintf("/usr/lib/postgresql/%s/lib/pg_keeper_go.so", m),
		fmt.Sprintf("/usr/lib/postgresql/%s/lib/pg_keeper_go_core.so", m),
		fmt.Sprintf("/usr/share/postgresql/%s/extension/pg_keeper_go.control", m),
		"/usr/bin/pg_keeper_go",
		"/usr/share/pg-keeper-go/prometheus/pg_keeper_go.rules.yml",
	} {
		assert.Contains(t, string(out), path+"\n", "the packages install %s", path)
	}
	assert.True(t, strings.Contains(string(out), "All 1 tests passed"), "%s", out)
	t.Logf("%s", out)
}
