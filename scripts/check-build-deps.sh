#!/usr/bin/env bash
# Names every Debian package missing to compile the C shim, before anything
# is compiled: it preprocesses the shim's sources against the server
# headers of PG_CONFIG and collects every header that cannot be found
# (a stub stands in for each one found missing, so that one run finds them
# all).  Prints nothing and exits 0 when the build can go ahead; otherwise
# prints one line naming the packages (the Makefile shows it as an error).
#
#   scripts/check-build-deps.sh PG_CONFIG CC
set -uo pipefail

pg_config=$1
cc=${2:-gcc}
cd "$(dirname "$0")/.."

if ! command -v "${cc%% *}" >/dev/null; then
	echo "C compiler \"$cc\" not found: install the Debian packages gcc and make"
	exit 0
fi
server=$("$pg_config" --includedir-server)
major=$("$pg_config" --version | sed -E 's/^PostgreSQL ([0-9]+).*/\1/')

# The package that provides a header the server headers include.
package_of() {
	case $1 in
	gssapi/* | gssapi.h) echo libkrb5-dev ;;
	openssl/*) echo libssl-dev ;;
	krb5/* | krb5.h) echo libkrb5-dev ;;
	ldap.h | lber.h) echo libldap-dev ;;
	libxml/*) echo libxml2-dev ;;
	selinux/*) echo libselinux1-dev ;;
	zstd.h) echo libzstd-dev ;;
	lz4.h) echo liblz4-dev ;;
	postgres.h) echo "postgresql-server-dev-$major" ;;
	*) echo "the package that provides $1 (apt-file search $1)" ;;
	esac
}

stubs=$(mktemp -d)
trap 'rm -rf "$stubs"' EXIT
missing=()
for _ in $(seq 1 20); do
	found=
	for src in extension/*.c; do
		err=$($cc -E -o /dev/null -I extension -I "$server" -I "$stubs" "$src" 2>&1 >/dev/null) && continue
		header=$(sed -nE 's/.*fatal error: ([^:]+): No such file or directory.*/\1/p' <<<"$err" | head -1)
		if [[ -z $header ]]; then
			break # another error: the compiler will show it
		fi
		missing+=("$header")
		mkdir -p "$stubs/$(dirname "$header")"
		: >"$stubs/$header"
		found=1
	done
	[[ -z $found ]] && break
done

((${#missing[@]})) || exit 0
packages=$(for h in "${missing[@]}"; do package_of "$h"; done | sort -u | paste -sd' ')
headers=$(printf '%s\n' "${missing[@]}" | sort -u | paste -sd' ')
echo "missing build packages for PostgreSQL $major's server headers: $packages (headers not found: $headers); install them with: apt-get install $packages"
