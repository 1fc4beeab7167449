#!/usr/bin/env bash
# The benchmark suite, one command: builds the function binaries, the floors and the local
# server with the release profile (the one `sam build` ships), runs every measurement and
# appends the results, with the machine, date and commit, to BENCHMARKS.md.
# Needs the .venv of infra/check.sh (moto) and wrk (installed with apt-get when missing).
# Usage: bash infra/bench/run.sh [--runs 21] [--stages startup,first,...]
set -euo pipefail
cd "$(dirname "$0")/../.."
SECONDS=0

if ! command -v wrk > /dev/null; then
  echo "==> installing wrk"
  if [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk > /dev/null; else sudo apt-get install -y -qq wrk > /dev/null; fi
fi
source infra/venv.sh
ensure_venv

BEFORE_FUNCTIONS=(-p operator -p subscribe -p activate -p grant -p authorize -p modify -p suspend -p directory -p expiry-sweep -p deliver)
FUNCTIONS=("${BEFORE_FUNCTIONS[@]}" -p publish)
# Two builds, as `sam build` builds each function on its own: the functions with the bare
# floor (the same features), then the SDK floors and the local server, which turn on
# aws-config and the SDK's default HTTPS client (built together, cargo would give the
# functions those features too).
echo "==> release build of every function and the bare floor ($SECONDS s)"
cargo build --release --locked "${FUNCTIONS[@]}" -p floor-bare --bins
echo "==> release build of the SDK floors and the local server ($SECONDS s)"
cargo build --release --locked -p floor -p local-api --bins

# The functions as they were before they stopped reading the machine's certificate store
# and running aws-config at start-up, built with the same profile (once, kept under
# target/before-startup), for the before/after of start-up and the first invocation.
BEFORE_STARTUP=f176c20
before_startup=target/before-startup
if [ ! -x "$before_startup/target/release/deliver" ]; then
  echo "==> release build of the functions at $BEFORE_STARTUP, before ($SECONDS s)"
  rm -rf "$before_startup/src"
  mkdir -p "$before_startup/src"
  git archive "$BEFORE_STARTUP" | tar -x -C "$before_startup/src"
  (cd "$before_startup/src" && CARGO_TARGET_DIR="$PWD/../target" cargo build --release --locked "${BEFORE_FUNCTIONS[@]}" --bins)
  rm -rf "$before_startup/src"
fi

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

echo "==> start-up, first invocation, requests, scale, delivery, load ($SECONDS s)"
# The runner itself is optimized (the scale stage sweeps a million seats), without LTO.
cargo build --locked --profile bench -p bench --bin bench
results=$(mktemp)
status=0
target/release/bench --binaries target/release --criterion target/criterion \
  --before-local-api "$before_dir/target/release/local-api" --before-binaries "$before_startup/target/release" \
  --commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo '+changes')" "$@" > "$results" || status=$?
# Whatever was measured is kept, a failed stage included (its section says it failed).
printf '\n' >> BENCHMARKS.md
cat "$results" >> BENCHMARKS.md
cat "$results"
rm -f "$results"
echo "==> appended to BENCHMARKS.md ($SECONDS s)"
exit "$status"
