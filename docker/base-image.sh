#!/usr/bin/env bash
# Creates the Debian base image debian:SUITE from Debian's packages when it
# is missing (there is no registry to pull it from here).  With a registry,
# the Dockerfiles' "FROM debian:SUITE" pulls the same-named official image
# and this script is not needed.
#
#   docker/base-image.sh bookworm [bullseye trixie sid ...]
set -euo pipefail
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

for suite in "$@"; do
	if docker image inspect "debian:$suite" >/dev/null 2>&1; then
		continue
	fi
	if ! command -v debootstrap >/dev/null; then
		echo "error: debootstrap not found: apt-get install debootstrap" >&2
		exit 1
	fi
	root=$(mktemp -d "/tmp/pg_keeper_go-rootfs-$suite-XXXX")
	trap 'rm -rf "$root"' EXIT
	echo "== building debian:$suite with debootstrap (once)"
	debootstrap --variant=minbase "$suite" "$root" "$MIRROR" >"$root.log" 2>&1 || {
		tail -20 "$root.log" >&2
		exit 1
	}
	rm -f "$root.log"
	rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
	tar -C "$root" -c . | docker import --change 'CMD ["bash"]' - "debian:$suite" >/dev/null
	rm -rf "$root"
	trap - EXIT
	echo "== debian:$suite ready"
done
