#!/usr/bin/env bash
set -euo pipefail
.venv/bin/nasctl --help
