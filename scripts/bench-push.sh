#!/usr/bin/env bash
# bench-push.sh — IMAP IDLE on a private loopback Dovecot (internal/dovecottest,
# never /etc/dovecot), two measurements (internal/benchpush):
#
#   idle     one process holds IDLE on N mailboxes (one IMAPS connection
#            each, imap.Watcher): Go heap per watched mailbox (HeapAlloc
#            after GC, against before the first Watch), goroutines, stack,
#            RSS, and the CPU (getrusage user+sys) of IDLE_SECS of idling;
#            then one message to 20 of them, their notification times.
#   latency  delivery→ticket (and, for IDLE, delivery→OnChange), IDLE and
#            polling side by side in one run:
#            MAILBOXES users watched with IDLE (OnChange starts the
#            cursor-based mailsync.Sync of that connection in-process) and
#            MAILBOXES users synced every POLL from a random phase; DELIVERIES
#            messages at uniformly random times within WINDOW, each to a
#            random mailbox index, the same message to both sides at once
#            (a Maildir write into new/). p50/p90/p99/max per side.
#
# Dovecot gets service imap-login and imap process_limit = N+100 (one login
# process — the TLS proxy in the default high-security mode — and one imap
# process per connection), service anvil, auth and stats client_limit =
# 2(N+100)+100, mail_max_userip_connections = 10 (each user has one
# connection); the script raises ulimit -n to the hard limit.
# fs.inotify.max_user_instances (128 by default) is left alone, as it is
# the whole machine's: with every mailbox owned by one uid (nobody), the
# imap processes past the 128th get no inotify instance ("Inotify instance
# limit for user 65534 exceeded, disabling") and look at their mailbox every
# mailbox_idle_check_interval (30 s) instead, so with N=1000 most
# notifications are late (the probe shows it), and while it runs every other
# Dovecot IDLE test of the machine running as nobody is late too. A server
# with that many virtual users of one uid needs that limit raised. The
# latency run watches 2×MAILBOXES, fewer than 128.
#
# Measured 2026-11-29 (2 shared cores, load 7–12, Dovecot 2.3.19, Go 1.26):
#   FULL=1 ONLY=idle: 1,000 mailboxes idling after 44.7 s (0 failed
#     attempts; 94.5 s and 1,001 failed attempts before WatchOptions.
#     MaxConnecting), 24.1 KiB heap, 3 goroutines, 14.8 KiB stack per
#     mailbox, RSS 70 MiB; idling: 0.08–0.12 % of one core, 48–71 µs of CPU
#     per mailbox and minute.
#     Probe with the default inotify limit: 872 imap processes had no
#     inotify instance; deliveries to them were seen after up to 30 s.
#   FULL=1 ONLY=latency (200 deliveries within 5 min, 10+10 mailboxes,
#     load 7 falling to 1): IDLE delivery→OnChange p50 504 ms, p99 840 ms
#     (Dovecot waits 0.5 s before it reports a change); delivery→ticket
#     IDLE p50 533 ms, p99 863 ms, max 955 ms; poll 60 s p50 27.5 s, p99
#     59.8 s, max 59.9 s. An earlier run at load 8 (tests running beside
#     it): IDLE p50 606 ms, p99 3.04 s, max 4.09 s; poll p50 28.9 s, p99 59.0 s.
#
# Default (short, ~4 minutes): N=100, IDLE_SECS=30, DELIVERIES=40 within
# WINDOW=120s. FULL=1: N=1000, IDLE_SECS=120, DELIVERIES=200 within
# WINDOW=300s (~12 minutes). POLL=60s and MAILBOXES=10 either way.
#
# Needs: go, dovecot (dovecot-imapd).
# Usage: scripts/bench-push.sh
#        FULL=1 scripts/bench-push.sh
#        N=1000 IDLE_SECS=120 DELIVERIES=200 WINDOW=300s POLL=60s MAILBOXES=10 ONLY=idle|latency scripts/bench-push.sh
set -euo pipefail

if [ -n "${FULL:-}" ]; then
	N=${N:-1000} IDLE_SECS=${IDLE_SECS:-120} DELIVERIES=${DELIVERIES:-200} WINDOW=${WINDOW:-300s}
fi
N=${N:-100}
IDLE_SECS=${IDLE_SECS:-30}
DELIVERIES=${DELIVERIES:-40}
WINDOW=${WINDOW:-120s}
POLL=${POLL:-60s}
MAILBOXES=${MAILBOXES:-10}
COALESCE=${COALESCE:-1s} # WatchOptions.Coalesce of the IDLE side (imap.DefaultCoalesce)
ONLY=${ONLY:-}

root=$(cd "$(dirname "$0")/.." && pwd)
command -v go >/dev/null || { echo "bench-push: go not found" >&2; exit 1; }
command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || { echo "bench-push: dovecot not found (apt-get install dovecot-imapd)" >&2; exit 1; }
work=$(mktemp -d /tmp/bench-push.XXXXXX)
trap 'rm -rf "$work"' EXIT
(cd "$root" && go build -o "$work/benchpush" ./internal/benchpush)
ulimit -n "$(ulimit -Hn)"
echo "$(date -u +%FT%TZ), $(nproc) cores, load $(cut -d' ' -f1-3 /proc/loadavg)"
if [ "$ONLY" != latency ]; then
	"$work/benchpush" idle -n "$N" -idle "${IDLE_SECS}s"
fi
if [ "$ONLY" != idle ]; then
	"$work/benchpush" latency -deliveries "$DELIVERIES" -window "$WINDOW" -mailboxes "$MAILBOXES" -poll "$POLL" -coalesce "$COALESCE"
fi
