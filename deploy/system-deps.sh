#!/usr/bin/env bash
# The Debian packages the tests need beyond Python: docker-compose (validates
# docker-compose.yml without an engine), chromium (the dashboard's browser
# test) and a Chinese font (legible screenshots). Installs what is missing;
# `make test` calls it (and so .ci/run).
set -euo pipefail

need=()
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
command -v chromium >/dev/null 2>&1 || [ -x "${CHROMIUM:-/nonexistent}" ] || need+=(chromium)
[ -n "$(fc-list :lang=zh 2>/dev/null || true)" ] || need+=(fonts-wqy-zenhei)
[ ${#need[@]} -eq 0 ] && exit 0

sudo=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
    sudo=(sudo -n)
  else
    echo "missing Debian packages: ${need[*]} (run: sudo apt-get install -y ${need[*]}); the tests that need them will fail" >&2
    exit 0
  fi
fi
echo "installing Debian packages: ${need[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
"${sudo[@]}" apt-get update -qq
"${sudo[@]}" apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
