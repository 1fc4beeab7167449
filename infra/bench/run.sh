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
  -p operator -p subscribe -p activate -p grant -p authorize -p modify -p suspend -p directory -p expiry-sweep \
  -p floor -p local-api --bins

echo "==> the decision benchmark: ours against cedar-policy ($SECONDS s)"
cargo bench --locked -p decision-bench --bench decision -- --noplot

echo "==> start-up, requests, load ($SECONDS s)"
cargo build --locked -p bench --bin bench
results=$(mktemp)
target/debug/bench --binaries target/release --criterion target/criterion --commit "$(git rev-parse --short HEAD)$(git diff --quiet HEAD -- . ':!BENCHMARKS.md' || echo '+changes')" "$@" > "$results"
printf '\n' >> BENCHMARKS.md
cat "$results" >> BENCHMARKS.md
cat "$results"
rm -f "$results"
echo "==> appended to BENCHMARKS.md ($SECONDS s)"
