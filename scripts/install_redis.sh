#!/usr/bin/env bash
# Installs redis-server (Debian/Ubuntu package) when it is missing: the fleet's tests start a real
# one on a loopback port. Used by `make setup` and .ci/run; as root it runs apt-get itself, else
# through sudo when that works without a password, else it says what to run.
set -euo pipefail
if command -v redis-server >/dev/null 2>&1; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "redis-server is missing and this is not a Debian/Ubuntu system: install Redis >= 6" \
        "yourself (the fleet tests skip without it)" >&2
    exit 0
fi
SUDO=""
if [ "$(id -u)" != "0" ]; then
    if sudo -n true 2>/dev/null; then
        SUDO="sudo -n"
    else
        echo "redis-server is missing: run 'sudo apt-get install -y redis-server'" \
            "(the fleet tests skip without it)" >&2
        exit 0
    fi
fi
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends redis-server >/dev/null
# the package may start a system service on 6379; nasctl's tests start their own servers
redis-server --version
