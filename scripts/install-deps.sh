#!/usr/bin/env bash
# Installs what building and testing pg_keeper_go needs on Debian bookworm:
# PostgreSQL 15 (server, client, server headers, and the headers they
# include: libkrb5-dev, libssl-dev), a C compiler and make, nftables (the
# local benchmark's vanished-host fault), debootstrap (the Docker base
# images; Docker itself and docker-compose come with the machine), and
# prometheus for promtool (the tests check /metrics and the alerting rules
# with it; the Prometheus server itself is not started).  Go 1.26 is expected at
# /usr/local/go or on PATH (Debian's golang-go is too old).
# Run as root; does nothing when everything is already there.
set -euo pipefail

PG_MAJOR=${PG_MAJOR:-15}
packages=(postgresql-$PG_MAJOR postgresql-client-$PG_MAJOR postgresql-server-dev-$PG_MAJOR libkrb5-dev libssl-dev gcc make nftables debootstrap prometheus)

missing=()
for p in "${packages[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [[ $(id -u) -ne 0 ]]; then
		echo "error: missing Debian packages: ${missing[*]}; run as root or: sudo apt-get install ${missing[*]}" >&2
		exit 1
	fi
	echo "installing: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	# Test clusters are created by the tests; do not create Debian's default one.
	mkdir -p /etc/postgresql-common/createcluster.d
	echo "create_main_cluster = false" >/etc/postgresql-common/createcluster.d/pg_keeper_go.conf
	# Install services without starting them (prometheus's daemon): the
	# Debian way, a policy-rc.d that forbids starts, for this install only.
	policy=/usr/sbin/policy-rc.d
	if [[ ! -e $policy ]]; then
		printf '#!/bin/sh\nexit 101\n' >$policy
		chmod +x $policy
		trap 'rm -f $policy' EXIT
	fi
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

if ! command -v go >/dev/null && [[ ! -x /usr/local/go/bin/go ]]; then
	echo "error: Go not found: install Go 1.26 into /usr/local/go (the Go module proxy serves the modules)" >&2
	exit 1
fi
