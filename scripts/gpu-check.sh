#!/usr/bin/env bash
# The first command to run on a GPU machine. The check is scripts/gpu_check.py (Python 3.11, standard
# library); users, the docs and the bundle call it by this name. `--help` says what it does.
set -euo pipefail
refuse() {
  echo "gpu-check: $*" >&2
  exit 2
}
command -v python3 >/dev/null || refuse "python3 not found: it runs the check, the peer and the export check"
python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' ||
  refuse "$(python3 --version 2>&1) is too old: the check needs Python 3.11 or newer"
exec python3 "$(dirname "${BASH_SOURCE[0]}")/gpu_check.py" "$@"
