#!/usr/bin/env bash
# Builds the Debian packages of one PostgreSQL major from a staged install
# (make install DESTDIR=STAGE), laid out as Debian's PostgreSQL extension
# packages are (postgresql-15-pg-cron and the like):
#
#   postgresql-NN-pg-keeper-go  the extension: the C shim and the Go core in
#                               /usr/lib/postgresql/NN/lib, the control file
#                               and SQL scripts in /usr/share/postgresql/NN/extension
#   pg-keeper-go                the pg_keeper_go command in /usr/bin (one for
#                               every major) and the Prometheus alerting rules
#                               in /usr/share/pg-keeper-go/prometheus
#
#   scripts/build-deb.sh STAGE OUT PG_MAJOR VERSION
# Runs on Debian (dpkg-deb); writes OUT/<package>_<version>_<arch>.deb.
set -euo pipefail
stage=$1 out=$2 major=$3 version=$4
src=$(cd "$(dirname "$0")/.." && pwd)
arch=$(dpkg --print-architecture)
maintainer="pg_keeper_go maintainers <maintainers@users.noreply.github.com>"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$out"

# package NAME DIR DEPENDS RECOMMENDS DESCRIPTION: DIR holds the files.
package() {
	local name=$1 dir=$2 depends=$3 recommends=$4 description=$5
	mkdir -p "$dir/DEBIAN" "$dir/usr/share/doc/$name"
	gzip -9n <"$src/README.md" >"$dir/usr/share/doc/$name/README.md.gz"
	local size
	size=$(du -sk --exclude=DEBIAN "$dir" | cut -f1)
	{
		echo "Package: $name"
		echo "Version: $version"
		echo "Architecture: $arch"
		echo "Maintainer: $maintainer"
		echo "Installed-Size: $size"
		if [[ -n $depends ]]; then echo "Depends: $depends"; fi
		if [[ -n $recommends ]]; then echo "Recommends: $recommends"; fi
		echo "Section: database"
		echo "Priority: optional"
		echo "Description: $description"
	} >"$dir/DEBIAN/control"
	find "$dir" -path "$dir/DEBIAN" -prune -o -type f -print0 | xargs -0 md5sum | sed "s| $dir/| |" >"$dir/DEBIAN/md5sums"
	dpkg-deb --root-owner-group -Zxz --build "$dir" "$out/${name}_${version}_${arch}.deb" >/dev/null
	echo "$out/${name}_${version}_${arch}.deb"
}

ext=$work/postgresql-$major-pg-keeper-go
mkdir -p "$ext/usr/lib/postgresql/$major/lib" "$ext/usr/share/postgresql/$major/extension"
cp -p "$stage/usr/lib/postgresql/$major/lib/pg_keeper_go.so" "$stage/usr/lib/postgresql/$major/lib/pg_keeper_go_core.so" \
	"$ext/usr/lib/postgresql/$major/lib/"
cp -p "$stage/usr/share/postgresql/$major/extension/"* "$ext/usr/share/postgresql/$major/extension/"
package "postgresql-$major-pg-keeper-go" "$ext" "postgresql-$major, libc6 (>= 2.31)" "pg-keeper-go" \
	"automatic failover for a PostgreSQL primary/standby pair (drop-in for pg_keeper)
 pg_keeper_go runs a keeper in a background worker on both nodes of a
 streaming replication pair: the standby promotes itself when the primary
 fails, the primary switches to asynchronous replication when the standby
 is lost, and leases, fencing and an optional witness keep two writable
 primaries apart.  It reads the pg_keeper.* settings of pg_keeper: replace
 the library name in shared_preload_libraries.
 .
 This package is for PostgreSQL $major."

cli=$work/pg-keeper-go
mkdir -p "$cli/usr/bin" "$cli/usr/share/pg-keeper-go/prometheus"
cp -p "$stage/usr/lib/postgresql/$major/bin/pg_keeper_go" "$cli/usr/bin/pg_keeper_go"
cp -p "$src/monitoring/pg_keeper_go.rules.yml" "$src/monitoring/pg_keeper_go.rules.test.yml" "$cli/usr/share/pg-keeper-go/prometheus/"
package pg-keeper-go "$cli" "" "" \
	"command-line tool of pg_keeper_go: status, watch, fsm
 pg_keeper_go status shows which node of a pg_keeper_go pair is the
 primary; pg_keeper_go watch keeps an application's YAML file pointing at
 it and restarts the application once per change.  The package also holds
 Prometheus alerting rules for the keepers' metrics.  The command is a
 static binary; it does not need PostgreSQL on the host."
