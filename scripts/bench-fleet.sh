#!/usr/bin/env bash
# bench-fleet.sh — a cycle over many IMAP connections, mailsync vs mbsync.
#
# Starts a private Dovecot on loopback (internal/dovecottest, never
# /etc/dovecot) with USERS accounts (default 1,000): the first FULL_USERS
# (200) hold MESSAGES (50) realistic messages each, the others FEW (5), MB
# (100) megabytes in all. Dovecot's service imap-login and service imap get
# process_limit = USERS + 100 (the default, 100, makes Dovecot answer the
# oldest waiting clients "* BYE Connection queue full" once 100 are open,
# which `mbsync -a` over 1,000 accounts would hit); everything else is
# dovecottest's stock configuration: login processes in high-security mode,
# one process per connection, so no TLS session can resume. LOGIN=performance
# switches imap-login to Dovecot's high-performance mode (service_count = 0,
# process_min_avail = 1: one long-lived login process whose TLS tickets let
# the next connection resume). Then, in the same run and alternately:
#
#   first sync  ROUNDS times: the FULL_USERS × MESSAGES mailboxes from
#               scratch (fresh mailsync state, fresh mbsync Maildirs);
#   cycle       ROUNDS times, after every account has been synced once and
#               one warm-up cycle: all USERS accounts again, nothing new.
#   steady      (STEADY=1) each round, a fleet process runs two cycles
#               (Interval 1 s, so the second follows at once): the row
#               shows the first cycle and the second's CPU per sync, what a
#               running fleet spends (connections to the database open,
#               statements prepared, the health rows it wrote remembered).
#
# mailsync side, two rows (internal/benchfleet):
#   cycle-mailsync  benchfleet sync — the engine a fleet worker runs (imap
#               connector + mailsync.Sync into a no-op sink, durable
#               sqlstate State in SQLite, whose lease every sync takes),
#               WORKERS (4) connections at a time in one process, one shared
#               tls.Config with a ClientSessionCache (the imap package
#               shares one by default since this change); no job queue.
#   cycle-fleet benchfleet sync -fleet — what a host runs: a fleet.Fleet on
#               River (riversqlite) with Workers = WORKERS, River, the
#               fleet's SQLHealth and the State in one SQLite file (as
#               mail2ticket -serve), every connection scheduled, until each
#               was synced once. "4 workers" is River's concurrency in one
#               process, like xargs -P4: on SQLite one process is the
#               deployment (riversqlite wants a single connection per
#               process), and 4 at a time is the comparison with mbsync.
#               (4 worker processes on PostgreSQL is TestFleetAcceptance.)
#               River: FetchCooldown 10 ms (its default, 100 ms, caps 4
#               workers at 40 syncs a second: 25 s for 1,000), poll 1 s.
#               River's connection comes from sqlstate.OpenSQLiteDB
#               (statements prepared once; -river-plain: sql.Open).
#   cycle-fleet-pg  (PG=1) the same on a private PostgreSQL (internal/pgtest;
#               River through riverpgxv5, state and health there); the row
#               also shows the PostgreSQL server's CPU, which /usr/bin/time
#               does not count.
# mbsync side: one small config per account (mbsyncrc/u0000: FSync no,
# SSLType IMAPS, Sync Pull, SyncState *, a Maildir per account) and the
# script a sysadmin would write:
#   printf '%s\n' u0000 … | xargs -P4 -I{} mbsync -q -c mbsyncrc/{} -a
# Wall time, CPU (user+sys; for mbsync of xargs and all its mbsync
# children) and peak RSS (for mbsync: of the largest single mbsync process)
# come from /usr/bin/time -v. Results: median (min–max) over the rounds.
# Machine speed: before and after each row, `benchfleet calibrate` times an
# X25519 exchange and 4 KiB of SHA-256 on one thread (best of five). On the
# shared 2-core machine these figures come from it ranged from 95 to 157 µs
# within minutes, and CPU figures move with it; the summary also scales
# each CPU figure to 100 µs, the machine's fast state.
#
# Measured 2026-11-29 (2 shared cores, Dovecot 2.3.19, isync 1.4.4, Go 1.26,
# STORE=/dev/shm, 1,000 users, 4 at a time; noisy: other jobs shared the CPUs):
#   LOGIN=security (3 rounds, before the fleet rows):
#                               cycle  mailsync 15.5 s (10.5–19.6), 2.7 ms CPU/conn;
#                               mbsync 41.5 s (36.6–63.9), 57 ms CPU/conn.
#                               first 200×50: mailsync 6.3 s (5.1–11.1), mbsync 13.9 s (13.2–15.3).
#   LOGIN=performance PG=1 (3 rounds, load 9–12; all handshakes but the first 2–4 resumed):
#                               cycle  mailsync 10.4 s (8.1–13.7), 2.3 ms CPU/conn (1.8–2.6);
#                               fleet (River, SQLite) 10.0 s (9.3–12.6), 4.7 ms CPU/conn;
#                               fleet (River, PostgreSQL) 17.7 s (13.7–24.3), 3.7 ms CPU/conn
#                               + 4.8–5.7 ms in the PostgreSQL server;
#                               mbsync 73.5 s (70.7–80.0), 57 ms CPU/conn.
#                               first 200×50: mailsync 7.8 s (7.3–8.1), mbsync 16.9 s (15.2–19.8).
#   The same again at load 6–9: cycle mailsync 6.4 s (5.7–7.9), 2.2 ms (1.8–2.3);
#                               fleet (SQLite) 9.5 s (9.2–9.8), 4.7 ms (4.6–5.5);
#                               fleet (PostgreSQL) 9.2 s (8.5–11.1), 3.2 ms (2.4–3.2)
#                               + 3.6–5.5 ms in the server; mbsync 78.1 s (55.3–92.0), 59 ms.
#                               first 200×50: mailsync 6.0 s (4.1–7.4), mbsync 13.1 s (9.2–16.2).
#   After sqlstate.OpenSQLiteDB (statements prepared once per connection, River's
#   connection too), LOGIN=performance PG=1 (3 rounds, load 4–5):
#                               cycle  mailsync 5.0 s (4.8–5.2), 1.9 ms CPU/conn (1.8–1.9);
#                               fleet (River, SQLite) 6.5 s (6.4–7.1), 3.4 ms CPU/conn (3.3–3.8);
#                               fleet (River, PostgreSQL) 8.9 s (8.4–9.0), 3.4 ms CPU/conn (2.9–3.3
#                               in the other rounds) + 3.2–4.0 ms in the PostgreSQL server;
#                               mbsync 36.5 s (32.4–38.6), 62 ms CPU/conn.
#   After the health compare-and-set, River fetching one job at a time on
#   SQLite, the cursor coming with the lease and OpenPostgres keeping its
#   idle connections, LOGIN=performance PG=1 (3 rounds, load 4; the machine
#   ran about a fifth slower than in the runs above: first-mailsync 18.9 ms
#   CPU/conn, was 14–15):
#                               cycle  mailsync 4.8 s (4.4–5.1), 1.7 ms CPU/conn (1.6–1.9);
#                               fleet (River, SQLite) 6.1 s (5.5–6.4), 3.0 ms CPU/conn (2.5–3.1);
#                               fleet (River, PostgreSQL) 6.7 s (6.4–6.8), 2.4 ms CPU/conn (2.2–2.4)
#                               + 1.2–1.4 ms in the PostgreSQL server;
#                               mbsync 33.7 s (31.5–34.5), 58 ms CPU/conn.
#                               first 200×50: mailsync 3.6 s (3.5–4.3), mbsync 8.0 s (7.9–8.2).
#   The same right after (load 4–5): cycle mailsync 4.8 s, 1.7 ms; fleet (SQLite)
#                               5.8 s, 2.8 ms (2.7–2.9); fleet (PostgreSQL) 6.3 s, 2.1 ms
#                               (2.1–2.2) + 1.2–1.3 ms in the server; mbsync 33.9 s, 58 ms;
#                               first 200×50: mailsync 3.4 s, mbsync 7.1 s.
#   After Sync's lease renewal and the imap watch moved to timers and
#   context.AfterFunc (goroutines started per connection: engine 9 → 3,
#   fleet on PostgreSQL 10.6 → 4.6), LOGOUT without waiting for its answer,
#   a sync job's stack grown once, and SQLHealth's write in one statement on
#   PostgreSQL, LOGIN=performance PG=1 STEADY=1 (3 rounds, load 3.5–4.4, a
#   slow phase again: first-mailsync 17.2 ms CPU/conn):
#                               cycle  mailsync 5.0 s (4.7–5.1), 1.6 ms CPU/conn (1.5–1.6);
#                               fleet (River, SQLite) 6.1 s (6.1–6.4), 2.8 ms CPU/conn (2.8–2.9);
#                               fleet (River, PostgreSQL) 6.5 s (6.4–7.4), 2.1 ms CPU/conn (2.0–2.4)
#                               + 1.3–1.6 ms in the PostgreSQL server;
#                               the second cycle of a running fleet (STEADY): SQLite 2.2–2.7 ms,
#                               PostgreSQL 2.0–2.3 ms + 1.1–1.3 ms in the server, per sync;
#                               mbsync 32.2 s (31.5–33.7), 55 ms CPU/conn.
#                               first 200×50: mailsync 3.3 s (2.9–4.0), mbsync 6.8 s (6.6–7.0).
#   Then with SQLite statements not watched by a goroutine each
#   (sqlstate.OpenSQLiteDB) and secrets' forms made lazily (redact), the
#   same command (3 rounds, load 3.8–4.0, the slowest phase of the day:
#   first-mailsync 19.4 ms CPU/conn):
#                               cycle  mailsync 4.8 s (4.7–4.8), 1.5 ms CPU/conn (1.5–1.6),
#                               2 goroutines/conn;
#                               fleet (River, SQLite) 5.9 s (5.5–5.9), 2.7 ms (2.4–2.7), 6.7 goroutines;
#                               fleet (River, PostgreSQL) 6.4 s (6.3–6.8), 2.0 ms (2.0–2.2)
#                               + 1.2–1.5 ms in the PostgreSQL server, 4.6 goroutines;
#                               second cycle (STEADY): SQLite 2.3–2.7 ms, PostgreSQL 1.9–2.1 ms
#                               + 1.0–1.4 ms in the server, per sync;
#                               mbsync 32.9 s (27.2–33.1), 56 ms CPU/conn.
#                               first 200×50: mailsync 3.8 s (3.7–4.3), mbsync 8.7 s (8.2–8.9).
#   The same code again with the machine's speed per row (load 3.5–3.7;
#   calibration 96–161 µs, first-mailsync 13.7 ms CPU/conn):
#                               cycle  mailsync 4.4 s (4.2–4.4), 1.4 ms CPU/conn (1.35–1.44);
#                               fleet (River, SQLite) 5.3 s (5.2–5.4), 2.3 ms (2.2–2.4);
#                               fleet (River, PostgreSQL) 5.9 s (5.8–6.2), 1.7 ms (1.7–2.0)
#                               + 1.0–1.3 ms in the PostgreSQL server;
#                               second cycle (STEADY): SQLite 2.1–2.2 ms, PostgreSQL 1.7–1.9 ms
#                               + 0.9–1.2 ms in the server, per sync;
#                               mbsync 28.7 s (27.7–29.2), 49 ms CPU/conn.
#                               first 200×50: mailsync 2.6 s (2.6–3.0), mbsync 6.5 s (6.0–7.1).
#   Peak RSS: mailsync 26 MiB (cycle), 35 MiB (fleet on SQLite), 42 MiB (first
#   sync) for the whole process; mbsync 9 MiB per process.
#   CPU per connection grows with the load: the same code measured 1.8 to
#   3.1 ms a cycle between runs; compare rows of one run.
#
# Needs: go, dovecot (dovecot-imapd), mbsync (isync), /usr/bin/time, bc.
# Usage: scripts/bench-fleet.sh
#        LOGIN=performance ROUNDS=3 USERS=1000 FULL_USERS=200 MESSAGES=50 FEW=5 MB=100 WORKERS=4 STORE=/dev/shm scripts/bench-fleet.sh
set -euo pipefail

ROUNDS=${ROUNDS:-3}
USERS=${USERS:-1000}
FULL_USERS=${FULL_USERS:-200}
MESSAGES=${MESSAGES:-50}
FEW=${FEW:-5}
MB=${MB:-100}
WORKERS=${WORKERS:-4}
LOGIN=${LOGIN:-security} # or "performance": imap-login service_count = 0, process_min_avail = 1
STORE=${STORE:-} # where mbsync's Maildirs and mailsync's state go (default: the work dir)
PROFILE=${PROFILE:-} # a file: CPU profile of the fleet cycles (the last round's stays), for go tool pprof
PG=${PG:-} # 1: also the fleet on a private PostgreSQL (River through riverpgxv5, state and health there too)
STEADY=${STEADY:-} # 1: also, each round, the fleets run on (Interval 1 s) until every connection was synced twice: CPU per sync of the second cycle (a running fleet's), printed on the row

root=$(cd "$(dirname "$0")/.." && pwd)
for tool in go mbsync /usr/bin/time bc; do
	command -v "$tool" >/dev/null || { echo "bench-fleet: $tool not found (apt-get install golang isync time bc)" >&2; exit 1; }
done
command -v dovecot >/dev/null || [ -x /usr/sbin/dovecot ] || { echo "bench-fleet: dovecot not found (apt-get install dovecot-imapd)" >&2; exit 1; }
[ "$FULL_USERS" -le "$USERS" ] || FULL_USERS=$USERS

work=$(mktemp -d /tmp/bench-fleet.XXXXXX)
store=$(mktemp -d "${STORE:-$work}/bench-fleet-store.XXXXXX")
server_pid=""
cleanup() {
	touch "$work/stop"
	if [ -n "$server_pid" ]; then wait "$server_pid" 2>/dev/null || true; fi
	rm -rf "$store" "$work"
}
trap cleanup EXIT

echo "building…"
(cd "$root" && go build -o "$work/benchfleet" ./internal/benchfleet)

echo "starting Dovecot with $USERS users ($FULL_USERS × $MESSAGES messages, the others × $FEW, ~$MB MB)…"
login_flag=()
[ "$LOGIN" = performance ] && login_flag=(-login-high-performance)
[ -n "$PG" ] && login_flag+=(-postgres)
"$work/benchfleet" serve -dir "$work" -users "$USERS" -full-users "$FULL_USERS" -messages "$MESSAGES" -few "$FEW" -mb "$MB" "${login_flag[@]}" >"$work/server.log" 2>&1 &
server_pid=$!
for _ in $(seq 1200); do
	[ -f "$work/env" ] && break
	kill -0 "$server_pid" 2>/dev/null || { cat "$work/server.log" >&2; exit 1; }
	sleep 0.5
done
[ -f "$work/env" ] || { echo "bench-fleet: the server did not come up" >&2; cat "$work/server.log" >&2; exit 1; }
# shellcheck disable=SC1091
. "$work/env"
sed 's/^/  /' "$work/server.log"
grep -A4 -E '^service imap(-login)? \{' "$BENCH_DOVECOT_CONF" | grep -E 'service|process_' | tr '\n' ' ' | sed 's/^/  dovecot.conf: /; s/$/\n/'

port=${BENCH_ADDR##*:}
users() { for i in $(seq "$1" $(($2 - 1))); do printf 'u%04d\n' "$i"; done; }
mkdir -p "$work/mbsyncrc"
for u in $(users 0 "$USERS"); do
	cat >"$work/mbsyncrc/$u" <<EOF
FSync no

IMAPAccount $u
Host localhost
Port $port
User $u
Pass $BENCH_PASSWORD
SSLType IMAPS
CertificateFile $BENCH_CA

IMAPStore far
Account $u

MaildirStore near
Path $store/mb/$u/
Inbox $store/mb/$u/INBOX

Channel $u
Far :far:INBOX
Near :near:
Create Near
Sync Pull
SyncState *
EOF
done

# calib prints the machine's speed now (benchfleet calibrate: µs per X25519
# exchange and 4 KiB hashed, one thread; ~100 when the shared cores run
# fast, up to ~155 when they are slowed down by their neighbours).
calib() { "$work/benchfleet" calibrate | awk '{print $3}'; }

# measure NAME CMD... : runs CMD under /usr/bin/time -v, appends
# "NAME wall cpu_seconds rss_kib speed" to results (speed: the mean of a
# calibration before and after).
measure() {
	local name=$1
	shift
	local c0 c1 speed
	c0=$(calib)
	/usr/bin/time -v -o "$work/time.txt" "$@" >"$work/out.txt" 2>&1 || { echo "bench-fleet: $name failed:" >&2; tail -20 "$work/out.txt" >&2; cat "$work/time.txt" >&2; exit 1; }
	c1=$(calib)
	speed=$(echo "($c0 + $c1) / 2" | bc -l)
	local wall cpu rss
	wall=$(awk -F': ' '/Elapsed \(wall clock\)/ {n=split($2,p,":"); s=0; for(i=1;i<=n;i++) s=s*60+p[i]; print s}' "$work/time.txt")
	cpu=$(awk -F': ' '/User time|System time/ {s+=$2} END {print s}' "$work/time.txt")
	rss=$(awk -F': ' '/Maximum resident set size/ {print $2}' "$work/time.txt")
	echo "$name $wall $cpu $rss $speed" >>"$work/results"
	printf '  %-16s %7.2f s  CPU %6.2f s  %6.1f MiB  machine %3.0f µs   %s\n' "$name" "$wall" "$cpu" "$(echo "$rss / 1024" | bc -l)" "$speed" "$(tr '\n' ' ' <"$work/out.txt" | sed 's/mailsync: [0-9]* connections, [0-9]* workers, //; s/ TLS sessions offered [0-9\/]*,//; s/, goroutines [0-9]*//' | cut -c1-400)"
}

ms_sync() { # name from to want-created [extra flags]
	local name=$1 from=$2 to=$3 want=$4
	shift 4
	measure "$name" "$work/benchfleet" sync -env "$work/env" -state "$store/state.db" -workers "$WORKERS" -from "$from" -to "$to" -want-created "$want" "$@"
}
fl_sync() { # name: a cycle through fleet.Fleet (River on the state's SQLite file)
	local prof=()
	[ -n "$PROFILE" ] && prof=(-cpuprofile "$PROFILE")
	ms_sync "$1" 0 "$USERS" 0 -fleet "${prof[@]}"
}
pg_sync() { # name [want-created]: the same on PostgreSQL
	[ -n "$PG" ] || return 0
	ms_sync "$1" 0 "$USERS" "${2:-0}" -fleet -postgres
}
steady_sync() { # with STEADY=1: a first and a second cycle in one fleet process, SQLite and PostgreSQL
	[ -n "$STEADY" ] || return 0
	ms_sync steady-fleet 0 "$USERS" 0 -fleet -second-cycle 1s
	[ -n "$PG" ] || return 0
	ms_sync steady-fleet-pg 0 "$USERS" 0 -fleet -postgres -second-cycle 1s
}
mb_sync() { # name from to
	users "$2" "$3" >"$work/list"
	(cd "$store" && mkdir -p mb && cd mb && xargs -a "$work/list" mkdir -p)
	measure "$1" xargs -a "$work/list" -P"$WORKERS" -I{} mbsync -q -c "$work/mbsyncrc/{}" -a
}
mb_count() { # from to want
	local n=0
	for u in $(users "$1" "$2"); do
		n=$((n + $(find "$store/mb/$u/INBOX/cur" "$store/mb/$u/INBOX/new" -type f | wc -l)))
	done
	[ "$n" -eq "$3" ] || { echo "bench-fleet: mbsync holds $n messages for users $1–$2, want $3" >&2; exit 1; }
}

: >"$work/results"
first_ms() { rm -f "$store"/state.db*; ms_sync first-mailsync 0 "$FULL_USERS" $((FULL_USERS * MESSAGES)); }
first_mb() {
	for u in $(users 0 "$FULL_USERS"); do rm -rf "${store:?}/mb/$u"; done
	mb_sync first-mbsync 0 "$FULL_USERS"
	mb_count 0 "$FULL_USERS" $((FULL_USERS * MESSAGES))
}
echo "first full sync of $FULL_USERS × $MESSAGES messages, $WORKERS at a time:"
for r in $(seq "$ROUNDS"); do
	if [ $((r % 2)) -eq 1 ]; then first_ms; first_mb; else first_mb; first_ms; fi
done

if [ "$USERS" -gt "$FULL_USERS" ]; then
	echo "first sync of the other $((USERS - FULL_USERS)) users (not counted):"
	ms_sync prep-mailsync "$FULL_USERS" "$USERS" $(((USERS - FULL_USERS) * FEW))
	mb_sync prep-mbsync "$FULL_USERS" "$USERS"
fi
[ -n "$PG" ] && echo "first sync of all $USERS users into PostgreSQL (not counted):"
pg_sync prep-fleet-pg $((FULL_USERS * MESSAGES + (USERS - FULL_USERS) * FEW))
echo "warm-up cycle (not counted):"
ms_sync warm-mailsync 0 "$USERS" 0
fl_sync warm-fleet
pg_sync warm-fleet-pg
mb_sync warm-mbsync 0 "$USERS"
echo "cycle over $USERS connections, nothing new, $WORKERS at a time:"
for r in $(seq "$ROUNDS"); do
	echo "  round $r, load: $(cut -d' ' -f1-3 /proc/loadavg)"
	case $((r % 3)) in
	1) ms_sync cycle-mailsync 0 "$USERS" 0; fl_sync cycle-fleet; pg_sync cycle-fleet-pg; mb_sync cycle-mbsync 0 "$USERS" ;;
	2) fl_sync cycle-fleet; pg_sync cycle-fleet-pg; mb_sync cycle-mbsync 0 "$USERS"; ms_sync cycle-mailsync 0 "$USERS" 0 ;;
	0) mb_sync cycle-mbsync 0 "$USERS"; ms_sync cycle-mailsync 0 "$USERS" 0; pg_sync cycle-fleet-pg; fl_sync cycle-fleet ;;
	esac
	steady_sync
done
mb_count 0 "$FULL_USERS" $((FULL_USERS * MESSAGES))

echo
echo "IMAPS on loopback, Dovecot process_limit $BENCH_PROCESS_LIMIT, imap-login $LOGIN mode, $WORKERS at a time, $ROUNDS rounds, median (min–max); CPU = user+sys of the client(s) in the median round (whole process), and that scaled to the calibration's 100 µs:"
summary() { # name connections
	awk -v n="$1" '$1 == n {print $2, $3, $4, $5}' "$work/results" | sort -n | awk -v n="$1" -v c="$2" '
		{ t[NR] = $1; cpu[NR] = $2; r[NR] = $3; sp[NR] = $4 }
		END {
			m = int((NR + 1) / 2)
			maxr = 0; for (i = 1; i <= NR; i++) if (r[i] > maxr) maxr = r[i]
			# CPU of the round with the median wall time, also scaled to a
			# machine at 100 µs (see calib)
			printf "  %-15s %5d conn  wall %6.2f s (%.2f–%.2f)  CPU %5.2f ms/conn (machine %3.0f µs; at 100 µs %5.2f)  peak RSS %6.1f MiB\n", n, c, t[m], t[1], t[NR], cpu[m] * 1000 / c, sp[m], cpu[m] * 1000 / c * 100 / sp[m], maxr / 1024
		}'
}
summary first-mailsync "$FULL_USERS"
summary first-mbsync "$FULL_USERS"
summary cycle-mailsync "$USERS"
summary cycle-fleet "$USERS"
[ -n "$PG" ] && summary cycle-fleet-pg "$USERS"
summary cycle-mbsync "$USERS"
echo "  load average at the end: $(cut -d' ' -f1-3 /proc/loadavg)"
