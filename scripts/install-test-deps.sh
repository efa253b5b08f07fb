#!/bin/sh
# install-test-deps.sh — install the external programs mailsync's tests use:
# Dovecot (IMAP + POP3; internal/dovecottest runs a private instance on
# loopback), isync (mbsync) and fetchmail (reference clients for
# comparisons), PostgreSQL (internal/pgtest runs a private cluster
# on loopback for the sqlstate tests) and Chromium (internal/browsertest
# drives it headless for the browser tests of the web examples).
#
# Idempotent and meant for CI as root on Debian 12: a fast no-op when
# everything is present. Otherwise it runs apt-get update and installs
# dovecot-imapd dovecot-pop3d isync fetchmail postgresql chromium
# non-interactively (without recommended packages),
# with a temporary /usr/sbin/policy-rc.d that exits 101 so the packages'
# system Dovecot and PostgreSQL are not started (tests never use them,
# /etc/dovecot or /etc/postgresql). An existing
# policy-rc.d is left alone and kept in force.
#
# Not root and something missing: prints what to install and exits 0; the
# Dovecot, PostgreSQL and browser tests then skip (unless CI=true, where
# they fail).
#
# INSTALL_TEST_DEPS_FORCE=1 runs the apt-get steps even when all is present.
set -eu

PACKAGES="dovecot-imapd dovecot-pop3d isync fetchmail postgresql chromium"
POLICY=/usr/sbin/policy-rc.d

have() {
	# dovecot lives in /usr/sbin, which a non-root PATH may lack.
	command -v "$1" >/dev/null 2>&1 || [ -x "/usr/sbin/$1" ] || [ -x "/usr/bin/$1" ]
}

# PostgreSQL's server programs are in /usr/lib/postgresql/<version>/bin,
# not on PATH.
have_postgres() {
	for dir in /usr/lib/postgresql/*/bin; do
		if [ -x "$dir/initdb" ] && [ -x "$dir/postgres" ]; then
			return 0
		fi
	done
	return 1
}

missing=""
for prog in dovecot doveadm mbsync fetchmail; do
	have "$prog" || missing="$missing $prog"
done
have_postgres || missing="$missing postgresql(initdb,postgres)"
# Debian's chromium package puts /usr/bin/chromium on PATH.
have chromium || missing="$missing chromium"
# The protocol binaries come from separate packages.
for bin in /usr/lib/dovecot/imap /usr/lib/dovecot/pop3; do
	if have dovecot && [ ! -x "$bin" ]; then
		missing="$missing $bin"
	fi
done

if [ -z "$missing" ] && [ "${INSTALL_TEST_DEPS_FORCE:-}" != 1 ]; then
	echo "install-test-deps: all present (dovecot, doveadm, mbsync, fetchmail, postgresql, chromium)"
	exit 0
fi

echo "install-test-deps: missing:${missing:- nothing (forced)}"
if [ "$(id -u)" -ne 0 ]; then
	echo "install-test-deps: not root; install them with:"
	echo "  sudo apt-get update && sudo apt-get install -y $PACKAGES"
	echo "install-test-deps: until then the Dovecot, PostgreSQL and browser tests are skipped (CI=true makes them fail)."
	exit 0
fi

own_policy=no
cleanup() {
	if [ "$own_policy" = yes ]; then
		rm -f "$POLICY"
	fi
}
trap cleanup EXIT
trap 'cleanup; exit 130' INT
trap 'cleanup; exit 143' TERM

if [ -e "$POLICY" ] || [ -L "$POLICY" ]; then
	echo "install-test-deps: keeping the existing $POLICY"
else
	printf '#!/bin/sh\n# Temporary, from mailsync scripts/install-test-deps.sh: start no services.\nexit 101\n' >"$POLICY"
	chmod 0755 "$POLICY"
	own_policy=yes
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update
# shellcheck disable=SC2086 # word splitting of the package list is intended
apt-get install -y --no-install-recommends \
	-o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
	$PACKAGES

for prog in dovecot doveadm mbsync fetchmail; do
	if ! have "$prog"; then
		echo "install-test-deps: $prog still missing after install" >&2
		exit 1
	fi
done
if ! have_postgres; then
	echo "install-test-deps: PostgreSQL's initdb/postgres still missing after install" >&2
	exit 1
fi
if ! have chromium; then
	echo "install-test-deps: chromium still missing after install" >&2
	exit 1
fi
echo "install-test-deps: installed: dovecot $(dovecot --version 2>/dev/null || /usr/sbin/dovecot --version)"
echo "install-test-deps: installed: $(chromium --version 2>/dev/null || echo chromium)"
