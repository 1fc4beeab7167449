#!/usr/bin/env bash
# Runs every check and test of the project, installing what it needs first:
# a .venv with the pinned Python tools (moto, cfn-lint, SAM CLI, cargo-lambda with zig,
# schemathesis, Playwright), the console's npm tools (TypeScript, axe-core) and Chromium (apt).
# Needs the Rust toolchain, Python 3.11+ with venv, Node.js with npm, and curl.
# Usage: bash infra/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
step() { printf '\n==> %s (%ss)\n' "$*" "$SECONDS"; }

step "Python tools: .venv with infra/requirements.txt (versions fixed by infra/constraints.txt)"
source infra/venv.sh
ensure_venv

step "Formatting"
cargo fmt --all -- --check

step "Lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Build every binary"
cargo build --workspace --bins --locked

step "Tests: unit, store contract (embedded + DynamoDB on moto), API, Lambda process"
# The Lambda process tests run the binaries just built.
rm -rf target/reliability
LAMBDA_BINARY_DIR="$PWD/target/debug" cargo test --workspace --locked

step "Reliability and security figures (recorded by the tests above)"
python3 - <<'PY'
import json, pathlib
for path in sorted(pathlib.Path("target/reliability").glob("*.json")):
    run = json.loads(path.read_text())
    figures = run["figures"]
    if "scenarios" in figures:
        for s in figures["scenarios"]:
            print(f'  {run["test"]}: {s["scenario"]}: {s["faults_injected"]} faults injected, client saw {s["client_saw"]}, {s["outcomes"]} outcome')
        print(f'  {run["test"]}: invariant violations {figures["invariant_violations"]}')
    else:
        print(f'  {run["test"]}: ' + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in figures.items()))
PY

step "Simulator: 300 histories on the embedded store, 100 more with provider faults, 3 on both stores (DynamoDB in moto), and the histories that found bugs, each checked against the reference model after every step"
# Each prints one line of figures; a failing history prints its shrunk steps and fails the run.
target/debug/sim --replay tests/sim/found --quiet
target/debug/sim --seeds 0..300 --steps 100 --jobs 2 --quiet
target/debug/sim --seeds 300..400 --steps 100 --jobs 2 --quiet --provider-faults
target/debug/sim --seeds 0..3 --steps 40 --stores both --jobs 2 --quiet

step "Template lint: cfn-lint and sam validate --lint"
export SAM_CLI_TELEMETRY=0 AWS_DEFAULT_REGION=${AWS_DEFAULT_REGION:-me-south-1}
.venv/bin/cfn-lint template.yaml
.venv/bin/sam validate --lint

step "Console: type-checked with TypeScript against its API module (generated from openapi.yaml, checked above), formatted with Prettier"
(cd infra/console-check && npm ci --no-audit --no-fund --silent && npm run --silent check)

step "Console in a real browser: Debian's Chromium driven by Playwright, axe-core on every screen"
if ! command -v chromium > /dev/null; then
  as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
  as_root apt-get install -y -qq chromium > /dev/null 2>&1 || { as_root apt-get update -qq && as_root apt-get install -y -qq chromium > /dev/null; }
fi
LOCAL_API="$PWD/target/debug/local-api" CHROMIUM="$(command -v chromium)" .venv/bin/pytest -q -p no:cacheprovider tests/browser

step "API fuzzing: schemathesis against the local server (openapi.yaml)"
bash infra/fuzz.sh target/debug/local-api

step "sam build (cargo-lambda builder, x86_64) of every function"
# The shipped profile (fat LTO, one codegen unit) takes about 17 minutes for nine functions
# on two cores; CI proves the build path (builder, binary names, template) with the same
# command on an unoptimized profile. infra/bench/run.sh builds and measures the shipped one.
PATH="$PWD/.venv/bin:$PATH" CARGO_PROFILE_RELEASE_OPT_LEVEL=0 CARGO_PROFILE_RELEASE_LTO=false \
  CARGO_PROFILE_RELEASE_CODEGEN_UNITS=256 .venv/bin/sam build --beta-features --parameter-overrides Architecture=x86_64
for function in $(grep -oE '^  [A-Za-z]+Function:' template.yaml | tr -d ' :'); do
  if grep -A3 "^  $function:" template.yaml | grep -q 'BuildMethod: rust-cargolambda'; then
    test -x ".aws-sam/build/$function/bootstrap" || { echo "sam build made no bootstrap for $function"; exit 1; }
  fi
done

printf '\nAll checks passed in %ss.\n' "$SECONDS"
