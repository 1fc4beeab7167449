#!/usr/bin/env bash
# Runs every check and test of the project, installing what it needs first:
# a .venv with the pinned Python tools (moto, cfn-lint). Needs the Rust toolchain and
# Python 3.11+ with venv. Usage: bash infra/check.sh
set -euo pipefail
cd "$(dirname "$0")/.."
SECONDS=0
step() { printf '\n==> %s (%ss)\n' "$*" "$SECONDS"; }

step "Python tools: .venv with infra/requirements.txt"
wanted=$(sha256sum infra/requirements.txt | cut -d' ' -f1)
if [ "$(cat .venv/.installed 2>/dev/null)" != "$wanted" ]; then
  python3 -m venv .venv
  .venv/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt
  echo "$wanted" > .venv/.installed
fi

step "Formatting"
cargo fmt --all -- --check

step "Lints (clippy, warnings are errors)"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "Build every binary"
cargo build --workspace --bins --locked

step "Tests: unit, store contract (embedded + DynamoDB on moto), API, Lambda process"
# The Lambda process tests run the binaries just built.
LAMBDA_BINARY_DIR="$PWD/target/debug" cargo test --workspace --locked

step "Template lint"
.venv/bin/cfn-lint template.yaml

printf '\nAll checks passed in %ss.\n' "$SECONDS"
