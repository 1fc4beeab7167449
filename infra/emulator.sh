#!/usr/bin/env bash
# Starts the AWS emulator the tests use — moto, with DynamoDB (transactions serialized as
# DynamoDB's are), SES v2, SNS and DynamoDB Streams — on 127.0.0.1:PORT (default 5000), in
# the foreground. Plain `moto_server` handles requests in parallel, and its transactions are
# then not serializable: concurrent subscriptions can create users without a ledger entry.
# Installs the pinned .venv of infra/check.sh on first use.
# Usage: bash infra/emulator.sh [port]
set -euo pipefail
cd "$(dirname "$0")/.."
port=${1:-5000}
source infra/venv.sh
ensure_venv
cat <<INFO
==> emulator on http://127.0.0.1:$port (Ctrl-C stops it). In another terminal:
    export AWS_ENDPOINT_URL=http://127.0.0.1:$port AWS_REGION=me-south-1 AWS_ACCESS_KEY_ID=test AWS_SECRET_ACCESS_KEY=test
    cargo run -p local-api -- --store dynamodb --create-tables --demo
INFO
exec .venv/bin/python tests/moto/server.py "$port"
