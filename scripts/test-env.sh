#!/usr/bin/env bash
# Makes this machine ready for the test suites: PostgreSQL up on 127.0.0.1:5432 (installed and
# started when missing), and the Debian packages the suites need. Safe to run again and again.
# Under CI=true anything that cannot be made ready is an error; elsewhere it is a loud warning and
# the affected suite skips with its own message.
set -uo pipefail

ci="${CI:-}"
fail() {
  echo "test-env: $*" >&2
  if [ "$ci" = "true" ]; then exit 1; fi
}

as_root() {
  if [ "$(id -u)" = 0 ]; then "$@"; elif command -v sudo >/dev/null 2>&1; then sudo -n "$@"; else return 1; fi
}

apt_updated=""
apt_install() {
  # apt_install PACKAGE...: installs the packages that are not installed yet.
  local missing=()
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  echo "test-env: installing ${missing[*]}"
  if [ -z "$apt_updated" ]; then as_root apt-get update -qq >/dev/null && apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq "${missing[@]}" >/dev/null
}

# OpenSSL's gost engine: the GOST cross-checks run our code against it.
if ! openssl engine gost >/dev/null 2>&1; then
  apt_install openssl libengine-gost-openssl || fail "could not install libengine-gost-openssl"
  openssl engine gost >/dev/null 2>&1 || fail "OpenSSL's gost engine does not load"
fi

# promtool (Debian package prometheus) checks the shipped alert rules and their unit tests.
if ! command -v promtool >/dev/null 2>&1; then
  apt_install prometheus || fail "could not install prometheus (promtool)"
fi

# Headless Chromium for the browser tests (chromedp drives Debian's package, never a download).
if ! command -v chromium >/dev/null 2>&1; then
  apt_install chromium || fail "could not install chromium"
fi

pg_dsn="${ESIA_BROKER_TEST_POSTGRES:-}"
if [ -z "$pg_dsn" ]; then
  if ! command -v pg_isready >/dev/null 2>&1; then
    apt_install postgresql || fail "could not install PostgreSQL"
  fi
  if ! pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    echo "test-env: PostgreSQL is not answering on 127.0.0.1:5432; starting it"
    for v in $(ls /etc/postgresql 2>/dev/null); do
      as_root pg_ctlcluster --skip-systemctl-redirect "$v" main start 2>/dev/null || true
    done
    for _ in $(seq 1 30); do
      pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null && break
      sleep 1
    done
  fi
  if pg_isready -q -h 127.0.0.1 -p 5432 2>/dev/null; then
    # The tests connect as postgres over TCP without a password (trust auth, as on this kind of
    # machine). Check that once, with a clear message if it does not hold.
    if ! psql "postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable" -qAtc 'select 1' >/dev/null 2>&1; then
      fail "PostgreSQL answers but postgres@127.0.0.1 cannot log in without a password; set ESIA_BROKER_TEST_POSTGRES to a DSN that can create databases"
    fi
  else
    fail "PostgreSQL could not be started on 127.0.0.1:5432"
  fi
fi
exit 0
