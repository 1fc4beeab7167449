# Sourced by the scripts that need the pinned Python tools: makes .venv from
# infra/requirements.txt with every version fixed by infra/constraints.txt, and rebuilds it
# when either file changes. Needs Python 3.11+ with venv.
ensure_venv() {
  local wanted
  wanted=$(cat infra/requirements.txt infra/constraints.txt | sha256sum | cut -d' ' -f1)
  if [ "$(cat .venv/.installed 2>/dev/null)" != "$wanted" ]; then
    echo "==> installing the pinned Python tools into .venv"
    python3 -m venv .venv
    .venv/bin/pip install --quiet --disable-pip-version-check -r infra/requirements.txt -c infra/constraints.txt
    echo "$wanted" > .venv/.installed
  fi
}
