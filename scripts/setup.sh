#!/usr/bin/env bash
# The one install path, for a user, a contributor and CI alike (.ci/run calls it): the system
# packages the tests need (Chromium, to check pages in a real browser; PostgreSQL, for the
# ledger's suite; python3-venv), installed from Debian where this runs as root, then a fresh
# venv with torch pinned by constraints.txt and every extra. Run again: it only adds what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
missing=()
command -v chromium > /dev/null || missing+=(chromium)
ls /usr/lib/postgresql/*/bin/initdb > /dev/null 2>&1 || missing+=(postgresql)
python3 -c "import ensurepip" 2> /dev/null || missing+=(python3-venv)
if ((${#missing[@]})); then
    if [ "$(id -u)" = 0 ] && command -v apt-get > /dev/null; then
        echo "setup: installing ${missing[*]} from Debian"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" > /dev/null
    else
        echo "setup: cannot install ${missing[*]} (needs root and apt-get): run 'sudo apt-get install ${missing[*]}'; until then the browser and PostgreSQL tests fail saying so" >&2
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
.venv/bin/pip install -q -c constraints.txt -e ".[dev,ray,tune,service,hf]"
echo "setup: done (.venv/bin/unlearnkit, .venv/bin/python -m pytest -q)"
