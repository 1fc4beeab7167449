#!/usr/bin/env bash
# Uploads the console to a deployed stack: console/ and index.html into the console's
# bucket, with a config.json naming the stack's API and OpenID Connect provider, then
# invalidates CloudFront's copies. Needs the AWS CLI with the deploying account's
# credentials. Usage: bash infra/deploy-console.sh <stack name>
set -euo pipefail
cd "$(dirname "$0")/.."
stack=${1:?usage: bash infra/deploy-console.sh <stack name>}

output() {
  aws cloudformation describe-stacks --stack-name "$stack" --query "Stacks[0].Outputs[?OutputKey=='$1'].OutputValue" --output text
}
parameter() {
  aws cloudformation describe-stacks --stack-name "$stack" --query "Stacks[0].Parameters[?ParameterKey=='$1'].ParameterValue" --output text
}

bucket=$(output ConsoleBucketName)
distribution=$(output ConsoleDistributionId)
api=$(output ApiUrl)
issuer=$(parameter JwtIssuer)
client=$(parameter ConsoleClientId)
if [ -z "$client" ] || [ "$client" = "None" ]; then
  echo "The stack has no ConsoleClientId: register the console at the identity provider (redirect URI $(output ConsoleUrl)) and deploy with it." >&2
  exit 1
fi

staging=$(mktemp -d)
trap 'rm -rf "$staging"' EXIT
cp -R console "$staging/console"
cp console/index.html "$staging/index.html"
python3 -c 'import json, sys; print(json.dumps({"api": sys.argv[1], "auth": {"mode": "oidc", "issuer": sys.argv[2], "client_id": sys.argv[3], "scope": "openid", "token": "id_token"}}))' \
  "$api" "$issuer" "$client" > "$staging/config.json"

aws s3 sync "$staging" "s3://$bucket" --delete --cache-control "no-cache"
aws cloudfront create-invalidation --distribution-id "$distribution" --paths "/*" > /dev/null
echo "The console is at $(output ConsoleUrl)"
