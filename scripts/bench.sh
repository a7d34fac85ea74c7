#!/usr/bin/env bash
# make bench: a synthetic region on PostgreSQL, the broker (`esia-broker serve` on PostgreSQL),
# the ESIA emulator in its own process answering at once from a random population, and the load
# generator. The broker's CPU figures are its own: the emulator's work is in another process.
# Tunables: BENCH_SCHOOLS, BENCH_STUDENTS, BENCH_ACTIVE (guardians who log in), BENCH_USERS,
# BENCH_RATE (logins/s of the open-loop mode), BENCH_DURATION, BENCH_TOKEN_ALG.
set -euo pipefail
cd "$(dirname "$0")/.."
./scripts/test-env.sh
SCHOOLS=${BENCH_SCHOOLS:-200}
STUDENTS=${BENCH_STUDENTS:-50000}
USERS=${BENCH_USERS:-8}
ACTIVE=${BENCH_ACTIVE:-2000}
RATE=${BENCH_RATE:-100}
[ "$ACTIVE" -le "$STUDENTS" ] || ACTIVE=$STUDENTS
DURATION=${BENCH_DURATION:-20s}
TOKEN_ALG=${BENCH_TOKEN_ALG:-GOST3410_2012_256}
work=$(mktemp -d)
db="esia_bench_$(date +%s)"
admin="${ESIA_BROKER_TEST_POSTGRES:-postgres://postgres@127.0.0.1:5432/postgres?sslmode=disable}"
psql "$admin" -qc "CREATE DATABASE $db" >/dev/null
dsn="${admin%/*}/$db?sslmode=disable"
broker_pid=""
emu_pid=""
cleanup() {
  [ -n "$broker_pid" ] && kill "$broker_pid" 2>/dev/null && wait "$broker_pid" 2>/dev/null || true
  [ -n "$emu_pid" ] && kill "$emu_pid" 2>/dev/null && wait "$emu_pid" 2>/dev/null || true
  psql "$admin" -qc "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
go build -o "$work/esia-broker" ./cmd/esia-broker
go build -o "$work/esia-loadgen" ./cmd/esia-loadgen
export ESIA_BROKER_DATABASE_DSN="$dsn" ESIA_BROKER_LISTEN=127.0.0.1:18080 ESIA_BROKER_ISSUER=http://127.0.0.1:18080 \
  ESIA_BROKER_LOG_LEVEL=warn ESIA_BROKER_LIMITS_PAGES_PER_IP_PER_MINUTE=0 ESIA_BROKER_LIMITS_TOKEN_PER_IP_PER_MINUTE=0 \
  ESIA_BROKER_DATABASE_MAX_OPEN_CONNS=16
for s in MASTER_KEY COOKIE_KEY SNILS_PEPPER TOKEN_KEY; do export "ESIA_BROKER_SECRETS_$s=$(openssl rand -base64 32)"; done
cd "$work"
./esia-broker migrate up >/dev/null
./esia-loadgen region -schools "$SCHOOLS" -students "$STUDENTS" -population "$STUDENTS" -out .
./esia-broker roster schools import schools.csv
t0=$(date +%s.%N)
./esia-broker roster import roster.csv 2>/dev/null
echo "roster import: $(echo "$(date +%s.%N) - $t0" | bc) s for $STUDENTS students"
secret=$(./esia-broker clients create bench --redirect-uri http://127.0.0.1:9/bench/callback \
  --grant-type authorization_code,refresh_token,client_credentials --scope openid,profile,students,offline_access | sed -n 's/^client_secret: //p')
# The emulator's population is the first $ACTIVE guardians of the region: each logs in (and
# consents) once in the first_login phase, then the timed modes see returning users.
./esia-loadgen emulator -listen 127.0.0.1:18090 -dir . -population "$ACTIVE" -in-order-first -skip-signature-checks -token-alg "$TOKEN_ALG" 2>emulator.log &
emu_pid=$!
for _ in $(seq 1 100); do [ -s esia-cert.pem ] && curl -s -o /dev/null http://127.0.0.1:18090/ && break; sleep 0.1; done
export ESIA_BROKER_UPSTREAM_ESIA_ENABLED=true ESIA_BROKER_UPSTREAM_ESIA_BASE_URL=http://127.0.0.1:18090 \
  ESIA_BROKER_UPSTREAM_ESIA_CLIENT_ID=ESIA_BROKER_BENCH ESIA_BROKER_UPSTREAM_ESIA_SIGNER=gost \
  ESIA_BROKER_UPSTREAM_ESIA_KEY_FILE="$work/client-key.pem" ESIA_BROKER_UPSTREAM_ESIA_CERT_FILE="$work/client-cert.pem" \
  ESIA_BROKER_UPSTREAM_ESIA_VERIFY_CERT_FILES="$work/esia-cert.pem" ESIA_BROKER_UPSTREAM_ESIA_ACCESS_TYPE=online
./esia-broker serve >/dev/null 2>broker.log &
broker_pid=$!
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:18080/readyz >/dev/null && break; sleep 0.1; done
curl -fs http://127.0.0.1:18080/readyz >/dev/null || { echo "bench: the broker did not start:"; cat broker.log; exit 1; }
echo "machine: $(nproc) cores, $(free -g | awk '/Mem:/{print $2}') GiB; broker, emulator (own process, signature checks skipped, tokens $TOKEN_ALG), PostgreSQL and the generator on it"
./esia-loadgen run -issuer http://127.0.0.1:18080 -client-id bench -client-secret "$secret" -users "$USERS" -duration "$DURATION" \
  -first-logins "$ACTIVE" -rate "$RATE" \
  -pid "$broker_pid" -pg "$dsn" -json "${BENCH_JSON:-/dev/null}"
