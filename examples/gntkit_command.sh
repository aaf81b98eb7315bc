# Sourced by the example scripts: sets GNTKIT, the gntkit command to run. An explicit GNTKIT, an
# activated environment or any gntkit on PATH comes first; otherwise the environment that the
# README's set-up command makes (.venv in this repository) is used, so the scripts run right after
# that command without activating anything.
examples_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
if [ -n "${GNTKIT:-}" ]; then
    :
elif command -v gntkit >/dev/null 2>&1; then
    GNTKIT=gntkit
elif [ -x "$examples_dir/../.venv/bin/gntkit" ]; then
    GNTKIT="$(cd "$examples_dir/.." && pwd)/.venv/bin/gntkit"
else
    echo "error: gntkit is not on PATH and $examples_dir/../.venv/bin/gntkit does not exist: run the README's set-up command in the repository, activate the environment gntkit is installed in (source .venv/bin/activate), or set GNTKIT to the gntkit command." >&2
    exit 127
fi
