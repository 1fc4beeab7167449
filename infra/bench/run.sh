#!/usr/bin/env bash
# The benchmark suite, one command: builds the function binaries, the floors and the local
# server with the release profile (the one `sam build` ships), runs every measurement and
# appends the results, with the machine, date and commit, to BENCHMARKS.md.
# Needs the .venv of infra/check.sh (moto) and wrk (installed with apt-get when missing).
# Usage: bash infra/bench/run.sh [--runs 21]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS=0

if ! command -v wrk > /dev/null; then
  echo "==> installing wrk"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk > /dev/null; else sudo apt-get install -y -qq wrk > /dev/null; fi
fi
source infra/venv.sh
ensure_venv

echo "==> release build of every function, the floors and the local server ($SECONDS s)"
cargo build --release --locked \
  -p operator -p subscribe -p activate -p grant -p authorize -p modify -p suspend -p directory -p expiry-sweep -p deliver \
  -p floor -p local-api --bins

# The local server as it was before messages left through the outbox (they were sent inline
# then), built with the same profile, for the before/after of a 25-person subscription.
BEFORE_OUTBOX=9432875
before_dir=target/before-outbox
if [ ! -x "$before_dir/target/release/local-api" ]; then
  echo "==> release build of the local server at $BEFORE_OUTBOX, before the outbox ($SECONDS s)"
  git worktree remove --force "$before_dir/src" 2> /dev/null || true
  git worktree add --detach "$before_dir/src" "$BEFORE_OUTBOX" > /dev/null
  (cd "$before_dir/src" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --locked -p local-api --bin local-api)
  git worktree remove --force "$before_dir/src"
fi

echo "==> the decision benchmark: ours against cedar-policy ($SECONDS s)"
cargo bench --locked -p decision-bench --bench decision -- --noplot

echo "==> start-up, requests, scale, delivery, load ($SECONDS s)"
# The runner itself is optimized (the scale stage sweeps a million seats), without LTO.
cargo build --locked --profile bench -p bench --bin bench
results=$(mktemp)
status=0
target/release/bench --binaries target/release --criterion target/criterion \
  --before-local-api "$before_dir/target/release/local-api" \
  --commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo '+changes')" "$@" > "$results" || status=$?
# Whatever was measured is kept, a failed stage included (its section says it failed).
printf '\n' >> BENCHMARKS.md
cat "$results" >> BENCHMARKS.md
cat "$results"
rm -f "$results"
echo "==> appended to BENCHMARKS.md ($SECONDS s)"
exit "$status"
