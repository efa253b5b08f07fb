#!/usr/bin/env bash
# Runs all of mailsync's tests, exactly as CI does (.ci/run calls this).
# Installs what the tests need when it is missing (Dovecot, isync, fetchmail
# from Debian's packages), then: gofmt, go vet, go test -race, a short fuzz run.
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

echo "== go test -race"
go test -race -timeout 20m ./...

echo "== fuzz (short)"
go test -run '^$' -fuzz '^FuzzParse$' -fuzztime "${MAILSYNC_FUZZTIME:-20s}" .
