#!/usr/bin/env bash
# vulncheck.sh — govulncheck on mailsync against an offline vulnerability
# database (scripts/test.sh runs it; it runs alone too).
#
# The database is built from the golang.org/x/vulndb module, fetched through
# the Go module proxy and checked against the sum pinned below, by that
# module's own cmd/indexdb (its data/osv holds every report). Nothing is
# asked of vuln.go.dev. The built database is cached per vulndb version in
# $MAILSYNC_CACHE_DIR (default ${XDG_CACHE_HOME:-$HOME/.cache}/mailsync,
# else .cache/ here, ignored by git), so only the first run on a machine, or
# the first after the pin moves, builds it. To take newer reports, move
# VULNDB_VERSION and VULNDB_SUM together: `go list -m golang.org/x/vulndb@latest`,
# then the "Sum" of `go mod download -json golang.org/x/vulndb@VERSION`.
#
# Verdict (scripts/vulnsummary): a finding in any module mailsync requires
# fails, whether its code is called, imported or only required. Findings in
# the standard library are printed with the Go release that fixes them, and
# the newest such release, but do not fail: the host picks its Go toolchain.
#
# govulncheck is pinned and run as `go run PKG@VERSION`, like staticcheck
# in scripts/test.sh (which says why).
set -euo pipefail
cd "$(dirname "$0")/.."

GOVULNCHECK=golang.org/x/vuln/cmd/govulncheck@v1.9.0
VULNDB_VERSION=v0.0.0-20261105234957-e22db6528018
VULNDB_SUM=h1:mfngRv0Yoh0VApsXKEN82CjD99kl7mtparN3bs3JnqI=

if [ -n "${MAILSYNC_CACHE_DIR:-}" ]; then
	cache=$MAILSYNC_CACHE_DIR
elif [ -n "${XDG_CACHE_HOME:-}" ]; then
	cache=$XDG_CACHE_HOME/mailsync
elif [ -n "${HOME:-}" ]; then
	cache=$HOME/.cache/mailsync
else
	cache=.cache
fi
mkdir -p "$cache/vulndb"
cache=$(cd "$cache" && pwd)
db=$cache/vulndb/$VULNDB_VERSION

tmp=$(mktemp -d)
build=
trap 'rm -rf "$tmp"; [ -z "$build" ] || rm -rf "$build"' EXIT

if [ ! -f "$db/index/db.json" ]; then
	echo "vulncheck: building the vulnerability database from golang.org/x/vulndb@$VULNDB_VERSION into $db"
	# Outside any module, so the download touches neither go.mod nor go.sum.
	info=$(cd "$tmp" && GOWORK=off GOFLAGS= go mod download -json "golang.org/x/vulndb@$VULNDB_VERSION")
	dir=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",*$/\1/p')
	sum=$(printf '%s\n' "$info" | sed -n 's/^[[:space:]]*"Sum": "\(.*\)",*$/\1/p')
	if [ "$sum" != "$VULNDB_SUM" ] || [ ! -d "$dir/data/osv" ]; then
		echo "vulncheck: golang.org/x/vulndb@$VULNDB_VERSION has sum '$sum' (want $VULNDB_SUM), dir '$dir'" >&2
		exit 1
	fi
	# indexdb builds with vulndb's own go.mod and go.sum. It writes beside
	# the cache entry, which then appears whole or not at all.
	build=$(mktemp -d "$cache/vulndb/.build.XXXXXX")
	(cd "$dir" && GOWORK=off GOFLAGS=-mod=readonly go run ./cmd/indexdb -vulns data/osv -out "$build/db")
	rm -rf "$db"
	mv "$build/db" "$db"
fi

# symbol (govulncheck's default) tells called from only imported code, and
# takes about 1-2 minutes here; VULNCHECK_SCAN=package takes seconds and
# gives the same verdict (which does not depend on the level).
scan=${VULNCHECK_SCAN:-symbol}
echo "vulncheck: $GOVULNCHECK -scan $scan, database golang.org/x/vulndb@$VULNDB_VERSION"
# In -json mode govulncheck exits 0 whatever it finds; a non-zero exit is a
# failure to scan. vulnsummary gives the verdict.
go run "$GOVULNCHECK" -db "file://$db" -scan "$scan" -json ./... >"$tmp/findings.json"
go run ./scripts/vulnsummary <"$tmp/findings.json"
