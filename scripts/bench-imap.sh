#!/usr/bin/env bash
# bench-imap.sh — full IMAP sync of a realistic mailbox, mailsync vs mbsync.
#
# Starts a private Dovecot on loopback (internal/dovecottest, never
# /etc/dovecot), fills one mailbox with MESSAGES realistic messages of about
# MB megabytes in all (default 2,000 and 125: text, HTML with inline images,
# attachments, a few of several MB), then, in the same run and alternately,
# times ROUNDS full syncs over IMAPS by
#   - mailsync: imap connector + mailsync.Sync (MIME parsing, mapping) into a
#     no-op sink that reads every attachment (imap/internal/benchtool), and
#   - mbsync (isync): pulling the same mailbox into a fresh local Maildir,
# measuring wall time and peak RSS with /usr/bin/time -v. One warm-up round
# of each runs first (Dovecot builds its index, files enter the page cache).
#
# Both write to the same place: mbsync its Maildir, mailsync the temporary
# files its parser spools large parts to (TMPDIR). STORE=/dev/shm puts both
# on tmpfs, taking the disk out of the comparison.
#
# Needs: go, dovecot (dovecot-imapd), mbsync (isync), /usr/bin/time (time), bc.
# Usage: scripts/bench-imap.sh
#        ROUNDS=5 MESSAGES=2000 MB=125 MODE=sync STORE=/dev/shm scripts/bench-imap.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
MESSAGES=${MESSAGES:-2000}
MB=${MB:-125}
MODE=${MODE:-sync} # or "fetch": the connector alone, no parsing
STORE=${STORE:-}   # where mbsync's Maildir and mailsync's spool files go (default: the work dir)

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in go mbsync /usr/bin/time bc; do
	command -v "$tool" >/dev/null || { echo "bench-imap: $tool not found (apt-get install golang isync time)" >&2; exit 1; }
done
command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || { echo "bench-imap: dovecot not found (apt-get install dovecot-imapd)" >&2; exit 1; }

work=$(mktemp -d /tmp/bench-imap.XXXXXX)
store=$(mktemp -d "${STORE:-$work}/bench-imap-store.XXXXXX")
server_pid=""
cleanup() {
	touch "$work/stop"
	if [ -n "$server_pid" ]; then wait "$server_pid" 2>/dev/null || true; fi
	rm -rf "$store" "$work"
}
trap cleanup EXIT

echo "building…"
(cd "$root" && go build -o "$work/benchtool" ./imap/internal/benchtool && go test -c -o "$work/imap.test" ./imap)

echo "starting Dovecot and generating $MESSAGES messages (~$MB MB)…"
MAILSYNC_BENCH_SERVER=$work MAILSYNC_BENCH_MESSAGES=$MESSAGES MAILSYNC_BENCH_MB=$MB \
	"$work/imap.test" -test.run '^TestBenchServer$' -test.v -test.timeout 3h >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 600); do
	[ -f "$work/env" ] && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
	sleep 0.5
done
[ -f "$work/env" ] || { echo "bench-imap: the server did not come up" >&2; cat "$work/server.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
grep -h "generated" "$work/server.log" | sed 's/^ *//' || true

port=${BENCH_ADDR##*:}
# FSync no: the mailsync side stores nothing on disk, so mbsync is not made
# to wait for fsync either (it still writes every message to its Maildir).
cat >"$work/mbsyncrc" <<EOF
FSync no

IMAPAccount bench
Host localhost
Port $port
User $BENCH_USER
Pass $BENCH_PASSWORD
SSLType IMAPS
CertificateFile $BENCH_CA

IMAPStore remote
Account bench

MaildirStore local
Path $store/mbsync/
Inbox $store/mbsync/INBOX

Channel bench
Far :remote:INBOX
Near :local:
Create Near
Sync Pull
SyncState *
EOF

# measure NAME CMD... : runs CMD under /usr/bin/time -v, appends "NAME secs rss_kib" to results.
measure() {
	local name=$1
	shift
	/usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>&1 || { echo "bench-imap: $name failed:" >&2; cat "$work/out.txt" "$work/time.txt" >&2; exit 1; }
	local wall rss
	wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$work/time.txt")
	rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
	echo "$name $wall $rss" >>"$work/results"
	printf '  %-9s %7.2f s  %6.1f MiB   %s\n' "$name" "$wall" "$(echo "$rss / 1024" | bc -l)" "$(tr '\n' ' ' <"$work/out.txt" | cut -c1-90)"
}

run_mailsync() { measure mailsync env TMPDIR="$store" "$work/benchtool" -env "$work/env" -mode "$MODE"; }
run_mbsync() {
	rm -rf "$store/mbsync" && mkdir -p "$store/mbsync"
	measure mbsync mbsync -q -c "$work/mbsyncrc" -a
	local n
	n=$(find "$store/mbsync/INBOX" -type f -path '*/cur/*' -o -type f -path '*/new/*' | wc -l)
	[ "$n" -eq "$BENCH_MESSAGES" ] || { echo "bench-imap: mbsync pulled $n messages, want $BENCH_MESSAGES" >&2; exit 1; }
}

echo "warm-up (not counted):"
run_mailsync
run_mbsync
: >"$work/results"
for r in $(seq "$ROUNDS"); do
	echo "round $r:"
	if [ $((r % 2)) -eq 1 ]; then run_mailsync; run_mbsync; else run_mbsync; run_mailsync; fi
done

echo
echo "$BENCH_MESSAGES messages, $(echo "$BENCH_BYTES / 1000000" | bc) MB, IMAPS on loopback, store $(df --output=fstype "$store" | tail -1), $ROUNDS rounds, median (min–max):"
for name in mailsync mbsync; do
	awk -v n="$name" '$1 == n {print $2, $3}' "$work/results" | sort -n | awk -v n="$name" '
		{ t[NR] = $1; r[NR] = $2 }
		END {
			m = int((NR + 1) / 2)
			maxr = 0; for (i = 1; i <= NR; i++) if (r[i] > maxr) maxr = r[i]
			printf "  %-9s wall %.2f s (%.2f–%.2f)   peak RSS %.1f MiB (max)\n", n, t[m], t[1], t[NR], maxr / 1024
		}'
done
