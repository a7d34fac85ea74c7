#!/usr/bin/env bash
# Mutation testing (gremlins) of the packages that hold the linking, invite and storage rules.
# Not part of CI: it takes many minutes. Each mutant is one small deliberate bug; the package's
# tests run against it and should fail ("killed"). Efficacy = killed / (killed + lived).
#
#   make mutate                      # linking, invites and storage
#   MUTATE_PKGS=./linking make mutate
#
# The tests run on the embedded store only (PostgreSQL is pointed at a closed port, so its cases
# skip): one run takes seconds instead of tens of seconds. Survivors are listed as LIVED.
set -euo pipefail
cd "$(dirname "$0")/.."
pkgs=${MUTATE_PKGS:-"./linking ./invites ./storage"}
gremlins="go run github.com/go-gremlins/gremlins/cmd/gremlins@v0.6.0"
export ESIA_BROKER_TEST_POSTGRES="postgres://nobody@127.0.0.1:1/none?sslmode=disable&connect_timeout=1"
unset CI
summary=$(mktemp)
for p in $pkgs; do
  echo "== mutating $p (started $(date +%T))"
  out=$(mktemp)
  # storagetest is the conformance suite itself (test code in a package of its own): not mutated.
  $gremlins unleash --workers 2 --timeout-coefficient 3 -S lc -E 'storagetest/' "$p" | tee "$out"
  eff=$(grep -Eo 'Test efficacy: [0-9.]+%' "$out" || echo "Test efficacy: ?")
  cov=$(grep -Eo 'Mutator coverage: [0-9.]+%' "$out" || echo "Mutator coverage: ?")
  echo "$p: $eff, $cov" >>"$summary"
done
echo "== summary"
cat "$summary"
