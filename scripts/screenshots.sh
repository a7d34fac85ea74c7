#!/bin/sh
# Regenerates docs/screenshots/: the main journey at 360 px, as the browser tests
# (TestBrowserJourneys, headless Chromium against the dev server) see it. `make screenshots`.
set -eu
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# CI=true: without Chromium this fails instead of skipping.
CI=true ESIA_BROKER_ARTIFACTS="$tmp" go test -count=1 -run '^TestBrowserJourneys$' ./cmd/esia-broker/
mkdir -p docs/screenshots
rm -f docs/screenshots/*.png
n=1
for step in parent-two-kids-home parent-two-kids-start parent-two-kids-consent parent-two-kids-account \
	parent-two-kids-account-child-created parent-two-kids-activation-key parent-codes-role parent-codes-code-error \
	parent-codes-code-done child-child-login unconfirmed-refused parent-three-kids-picker parent-two-kids-logged-out; do
	cp "$tmp/$step-360.png" "docs/screenshots/$(printf %02d "$n")-$step.png"
	n=$((n + 1))
done
echo "screenshots: $(ls docs/screenshots | wc -l) files in docs/screenshots/"
