#!/usr/bin/env bash
# Runs all of mailsync's tests, exactly as CI does (.ci/run calls this).
# Installs what the tests need when it is missing (Dovecot, isync, fetchmail
# from Debian's packages), then: gofmt, go vet, staticcheck, govulncheck
# (scripts/vulncheck.sh), go test -race, a short fuzz run.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/install-test-deps.sh

echo "== gofmt"
unformatted=$(gofmt -l $(git ls-files '*.go'; git ls-files --others --exclude-standard '*.go'))
if [ -n "$unformatted" ]; then
  echo "gofmt would change:"; echo "$unformatted"; exit 1
fi

echo "== go vet"
go vet ./...

# staticcheck and govulncheck (in scripts/vulncheck.sh) are pinned and run
# as `go run PKG@VERSION`: built with exactly the dependencies their own
# go.mod names, checked against the checksum database, cached by the go
# command, and kept out of mailsync's go.mod so they never reach users'
# builds. A shared tools module would resolve both in one build list and
# raise their common dependencies (golang.org/x/tools) to the larger version.
echo "== staticcheck"
t0=$SECONDS
go run honnef.co/go/tools/cmd/staticcheck@v0.8.2 ./...
echo "staticcheck: ok in $((SECONDS - t0))s"

echo "== govulncheck"
t0=$SECONDS
bash scripts/vulncheck.sh
echo "govulncheck: ok in $((SECONDS - t0))s"

echo "== go test -race"
go test -race -timeout 20m ./...

echo "== fuzz (short)"
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "${MAILSYNC_FUZZTIME:-20s}" .
