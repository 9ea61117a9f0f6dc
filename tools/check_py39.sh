#!/usr/bin/env bash
# Python 3.9 checks (habitat-sim's conda builds and habitat-lab target Python 3.9):
#   1. byte-compile agent/ eval/ tools/ tests/ with Python 3.9 (syntax newer than 3.9 fails);
#   2. PEP 604 annotations ("X | Y") only in modules with `from __future__ import annotations`;
#   3. resolve setup.py's install_requires for Python 3.9 with numpy==1.26.* (habitat-lab 0.3.x
#      pins numpy 1.26.4), binary wheels only, torch left out: pip's dry run downloads every
#      wheel it considers (this index serves no PEP 658 metadata), and torch is GBs;
#   4. torch and every lower bound: `pip index versions` (no download) lists the versions with
#      a Python 3.9 wheel for this platform; the lowest one inside each range is printed and a
#      range with none fails. A torch pin in tools/setup.sh with no 3.9 wheel is a warning.
# Usage: bash tools/check_py39.sh   (PYTHON39=/path/to/python3.9 to choose the interpreter)
set -euo pipefail
cd "$(dirname "$0")/.."

PY39=${PYTHON39:-}
if [ -z "$PY39" ]; then
  if command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.9.18/bin/python" ]; then
    PY39="$(pyenv root)/versions/3.9.18/bin/python"
  elif command -v python3.9 >/dev/null 2>&1; then
    PY39=$(command -v python3.9)
  else
    echo "check_py39: no Python 3.9 found (tried \$PYTHON39, \$(pyenv root)/versions/3.9.18, python3.9)" >&2
    exit 1
  fi
fi
"$PY39" -c 'import sys; assert sys.version_info[:2] == (3, 9), sys.version' || {
  echo "check_py39: $PY39 is not Python 3.9" >&2; exit 1; }
echo "check_py39: interpreter $PY39 ($("$PY39" --version 2>&1))"

WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

# 1. byte-compile; .pyc files go to a scratch prefix, not into the tree
echo "check_py39: [1/4] byte-compiling agent eval tools tests with Python 3.9"
PYTHONPYCACHEPREFIX="$WORK/pycache" "$PY39" -m compileall -q agent eval tools tests
echo "check_py39:       ok: every module compiles under Python 3.9"

# 2-4 are driven by the project interpreter (it has 'packaging'); pip runs under Python 3.9
PY39="$PY39" WORK="$WORK" python3 - <<'PYEOF'
import ast
import json
import os
import re
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor

from packaging.requirements import Requirement
from packaging.version import InvalidVersion, Version

PY39, WORK = os.environ["PY39"], os.environ["WORK"]
NUMPY_CONSTRAINT = "numpy==1.26.*"
failures = []


def say(msg):
    print(f"check_py39:       {msg}", flush=True)


def pip39(*args):
    return subprocess.run([PY39, "-m", "pip", "--disable-pip-version-check", *args],
                          capture_output=True, text=True)


# ---- 2. PEP 604 annotations need postponed evaluation on 3.9
print("check_py39: [2/4] 'X | Y' annotations only under `from __future__ import annotations`")
def annotations_of(tree):
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = node.args
            for a in args.posonlyargs + args.args + args.kwonlyargs + [args.vararg, args.kwarg]:
                if a is not None and a.annotation is not None:
                    yield a.annotation
            if node.returns is not None:
                yield node.returns
        elif isinstance(node, ast.AnnAssign):
            yield node.annotation

offenders = []
for top in ("agent", "eval", "tools", "tests"):
    for root, _, files in os.walk(top):
        for name in sorted(files):
            if not name.endswith(".py"):
                continue
            path = os.path.join(root, name)
            with open(path, encoding="utf-8") as f:
                tree = ast.parse(f.read(), path)
            future = any(isinstance(n, ast.ImportFrom) and n.module == "__future__"
                         and any(a.name == "annotations" for a in n.names) for n in tree.body)
            if future:
                continue
            for ann in annotations_of(tree):
                if any(isinstance(n, ast.BinOp) and isinstance(n.op, ast.BitOr)
                       for n in ast.walk(ann)):
                    offenders.append(f"{path}:{ann.lineno}")
if offenders:
    failures.append("PEP 604 annotations without `from __future__ import annotations`: "
                    + ", ".join(offenders))
    say("FAIL: " + ", ".join(offenders))
else:
    say("ok: no module evaluates 'X | Y' annotations at import")

# ---- requirements from setup.py
with open("setup.py", encoding="utf-8") as f:
    setup_tree = ast.parse(f.read())
requirements = []
for node in ast.walk(setup_tree):
    if isinstance(node, ast.keyword) and node.arg == "install_requires":
        requirements = [Requirement(r) for r in ast.literal_eval(node.value)]
if not requirements:
    sys.exit("check_py39: setup.py has no install_requires list")

# ---- 3. resolve everything but torch for 3.9 with numpy 1.26
print(f"check_py39: [3/4] pip resolution for Python 3.9 (binary wheels only, {NUMPY_CONSTRAINT}, "
      "torch checked in step 4)")
reqs_file, cons_file = os.path.join(WORK, "requirements.txt"), os.path.join(WORK, "constraints.txt")
with open(reqs_file, "w") as f:
    f.write("\n".join(str(r) for r in requirements if r.name.lower() != "torch") + "\n")
with open(cons_file, "w") as f:
    f.write(NUMPY_CONSTRAINT + "\n")
report = os.path.join(WORK, "report.json")
res = pip39("install", "--dry-run", "--ignore-installed", "--only-binary=:all:", "--quiet",
            "--report", report, "-r", reqs_file, "-c", cons_file)
if res.returncode != 0:
    errors = [l for l in res.stderr.splitlines() if "is ignored" not in l]
    failures.append("pip could not resolve install_requires for Python 3.9 with numpy 1.26")
    say("FAIL: pip could not resolve:\n" + "\n".join(errors[-20:]))
else:
    with open(report) as f:
        resolved = {i["metadata"]["name"].lower().replace("_", "-"): i["metadata"]["version"]
                    for i in json.load(f)["install"]}
    direct = [r for r in requirements if r.name.lower() != "torch"]
    say("ok: resolved " + ", ".join(
        f"{r.name}=={resolved.get(r.name.lower().replace('_', '-'), '?')}" for r in direct)
        + f" (+{len(resolved) - len(direct)} dependencies)")

# ---- 4. torch and lower bounds: versions with a 3.9 wheel, without downloading any
print("check_py39: [4/4] lowest version with a Python 3.9 wheel inside each range (pip index)")
def binary_versions(name):
    res = pip39("index", "versions", "--only-binary=:all:", name)
    line = next((l for l in res.stdout.splitlines() if l.startswith("Available versions:")), "")
    versions = []
    for v in line.split(":", 1)[-1].split(","):
        try:
            versions.append(Version(v.strip()))
        except InvalidVersion:
            pass
    return sorted(versions)

with ThreadPoolExecutor(max_workers=4) as pool:
    available = dict(zip([r.name for r in requirements],
                         pool.map(binary_versions, [r.name for r in requirements])))
for req in requirements:
    inside = [v for v in available[req.name] if req.specifier.contains(v, prereleases=False)]
    if not inside:
        failures.append(f"{req}: no version with a Python 3.9 wheel")
        say(f"FAIL: {req}: no version inside the range has a Python 3.9 wheel")
        continue
    bounds = [Version(s.version) for s in req.specifier if s.operator in (">=", "==", "~=")]
    note = ""
    if bounds and min(inside) != bounds[0]:
        note = f" (the bound {bounds[0]} itself has no Python 3.9 wheel)"
    say(f"ok: {req}: lowest {min(inside)}, newest listed {max(inside)}{note}")

# the torch pin that tools/setup.sh installs when no torch is present
if os.path.exists(os.path.join("tools", "setup.sh")):
    with open(os.path.join("tools", "setup.sh")) as f:
        pins = set(re.findall(r"torch==([0-9]+(?:\.[0-9]+)*(?:\+[0-9A-Za-z.]+)?)\b", f.read()))
    torch_versions = available.get("torch") or binary_versions("torch")
    for pin in sorted(pins):
        if Version(pin) not in torch_versions:
            say(f"WARNING: tools/setup.sh installs torch=={pin}, which has no Python 3.9 wheel "
                f"(newest for 3.9: {max(torch_versions) if torch_versions else 'none'})")

if failures:
    print("check_py39: FAILED:\n  " + "\n  ".join(failures))
    sys.exit(1)
print("check_py39: all Python 3.9 checks passed")
PYEOF
