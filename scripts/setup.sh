# Sourced by scripts/quickstart and scripts/test: sets up the environment ablang runs in.
#
#   . scripts/setup.sh [EXTRA]
#
# - With a virtual environment active ($VIRTUAL_ENV), installs into it; otherwise creates
#   .venv/ at the top of the repository (once) and activates it.
# - Installs ablang editable with the versions pinned in constraints.txt, plus the optional
#   dependency group EXTRA (e.g. dev). A marker in the environment remembers what was installed
#   for which pyproject.toml + constraints.txt; a second run with the same files installs nothing.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

extra="${1:-}"
if ! python3 -c 'import sys; sys.exit(sys.version_info < (3, 10))' 2>/dev/null; then
    echo "ablang needs Python 3.10 or newer as python3; found: $(python3 --version 2>&1)" >&2
    exit 1
fi
if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x .venv/bin/python ]; then
        echo "creating a virtual environment in .venv/"
        python3 -m venv .venv
    fi
    # shellcheck disable=SC1091
    . .venv/bin/activate
fi
digest="$(cat pyproject.toml constraints.txt | python -c 'import hashlib, sys; print(hashlib.sha256(sys.stdin.buffer.read()).hexdigest()[:16])')"
marker="$VIRTUAL_ENV/.ablang-installed-${extra:-base}-$digest"
if [ ! -e "$marker" ]; then
    spec="."
    [ -n "$extra" ] && spec=".[$extra]"
    echo "installing ablang ($spec) with the versions in constraints.txt into $VIRTUAL_ENV"
    python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e "$spec"
    touch "$marker"
fi
