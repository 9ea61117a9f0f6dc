#!/usr/bin/env python3
"""Mutation testing of langnav's core modules: do their tests catch a one-point bug?

For each module, every mutation point of its source is listed (an AST walk in source
order): comparison operators (``<`` → ``<=`` / ``>``, ``==`` ↔ ``!=``, ``in`` ↔ ``not in``,
``is`` ↔ ``is not``), arithmetic (``+`` ↔ ``-``, ``*`` ↔ ``/``, ``//`` → ``*``, ``**`` → ``*``,
``%`` → ``//``), augmented assignments (``+=`` ↔ ``-=``, ``*=`` ↔ ``/=``, ``x op= y`` → ``x = y``),
``and`` ↔ ``or``, removal of a unary minus or a ``not``, numeric constants (0 ↔ 1, n → n + 1),
``True`` ↔ ``False``, ``min`` ↔ ``max`` (also ``minimum``/``maximum``, ``argmin``/``argmax``)
and return values (``return x`` → ``return None``). Strings, f-strings, docstrings,
annotations and the arguments of ``raise`` are never mutated (they only change messages).

``--mutants N`` of them are sampled with ``--seed``; each is written to a temporary file
and the module's mapped test selection (:data:`MODULES`) runs with ``-x -q -p no:cacheprovider``
in a subprocess whose import of that module is redirected to the mutant (a
``sitecustomize`` in a temporary directory first on PYTHONPATH installs the redirect, so
worker processes see the mutant too). **The module on disk is never written.** A mutant
is *killed* when the tests fail, *survives* when they pass, *timed out* past
``--timeout-factor`` × the unmutated run's time. Mutants listed in
``tools/mutation_equivalent.txt`` (equivalent to the original, with a reason) are not run
and not counted: score = killed (incl. timed out) / (sampled − equivalent).

Usage (2-core machine: one module at a time, niced, one thread)::

    OMP_NUM_THREADS=1 nice -n 19 python tools/mutation_test.py eval/metrics.py --mutants 40 --seed 0
    python tools/mutation_test.py --list eval/metrics.py      # every mutation point, no run
"""
from __future__ import annotations

import argparse
import ast
import copy
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from typing import Dict, List, NamedTuple, Optional, Sequence, Tuple

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
EQUIVALENT_FILE = os.path.join(ROOT, "tools", "mutation_equivalent.txt")

#: module (repo-relative path) -> the pytest arguments that exercise it (fast: seconds)
MODULES: Dict[str, Tuple[str, ...]] = {
    "eval/metrics.py": ("tests/eval/test_metrics.py",),
    "eval/statistics.py": ("tests/eval/test_statistics.py",),
    "agent/algos/ppo.py": ("tests/algos/test_ppo_units.py", "tests/algos/test_gae.py"),
    # the hand-computed unit tests first: -x stops a killed mutant there, in seconds
    "agent/envs/houses/navigation.py": ("tests/envs/test_navigation_units.py",
                                        "tests/envs/test_navigation.py"),
    # after the unit tests, the trainers' tests on the tiny dataset (minutes per survivor)
    "agent/algos/adversarial.py": ("tests/algos/test_adversarial_units.py", "tests/algos/test_gail_airl.py"),
    "agent/algos/gail.py": ("tests/algos/test_adversarial_units.py", "tests/algos/test_gail_airl.py"),
    "agent/algos/airl.py": ("tests/algos/test_adversarial_units.py", "tests/algos/test_gail_airl.py"),
    "agent/models/reward.py": ("tests/algos/test_reward.py", "tests/algos/test_adversarial_units.py"),
}

_COMPARE_SWAPS = {
    ast.Lt: (ast.LtE, ast.Gt), ast.LtE: (ast.Lt, ast.GtE), ast.Gt: (ast.GtE, ast.Lt),
    ast.GtE: (ast.Gt, ast.LtE), ast.Eq: (ast.NotEq,), ast.NotEq: (ast.Eq,),
    ast.Is: (ast.IsNot,), ast.IsNot: (ast.Is,), ast.In: (ast.NotIn,), ast.NotIn: (ast.In,),
}
_BINOP_SWAPS = {
    ast.Add: (ast.Sub,), ast.Sub: (ast.Add,), ast.Mult: (ast.Div,), ast.Div: (ast.Mult,),
    ast.FloorDiv: (ast.Mult,), ast.Pow: (ast.Mult,), ast.Mod: (ast.FloorDiv,),
    ast.BitAnd: (ast.BitOr,), ast.BitOr: (ast.BitAnd,),
}
_SYMBOL = {
    ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!=",
    ast.Is: "is", ast.IsNot: "is not", ast.In: "in", ast.NotIn: "not in", ast.Add: "+",
    ast.Sub: "-", ast.Mult: "*", ast.Div: "/", ast.FloorDiv: "//", ast.Pow: "**",
    ast.Mod: "%", ast.BitAnd: "&", ast.BitOr: "|", ast.And: "and", ast.Or: "or",
}
_NAME_SWAPS = {"min": "max", "max": "min", "minimum": "maximum", "maximum": "minimum",
               "amin": "amax", "amax": "amin", "argmin": "argmax", "argmax": "argmin"}


class Mutant(NamedTuple):
    """One mutation: the ``index``-th node of the module's walk gets ``change``."""

    index: int  # position of the node in the deterministic walk
    line: int
    col: int
    kind: str  # compare, binop, augassign, boolop, unary, constant, name, return
    change: str  # e.g. "< -> <=" (what a developer reads)
    option: int  # which of the node's alternatives

    def key(self, path: str) -> str:
        """Stable id used by the equivalent-mutants file: ``path:line:col change``."""
        return f"{path}:{self.line}:{self.col} {self.change}"


def _skipped_nodes(tree: ast.AST) -> set:
    """ids of nodes never mutated: docstrings, annotations, f-strings, raise arguments."""
    skip: set = set()

    def mark(node: Optional[ast.AST]) -> None:
        if node is not None:
            skip.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant) \
                    and isinstance(body[0].value.value, str):
                mark(body[0])
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            mark(node.returns)
            for arg in node.args.args + node.args.kwonlyargs + node.args.posonlyargs:
                mark(arg.annotation)
            for arg in (node.args.vararg, node.args.kwarg):
                if arg is not None:
                    mark(arg.annotation)
        elif isinstance(node, ast.AnnAssign):
            mark(node.annotation)
        elif isinstance(node, (ast.JoinedStr, ast.Raise)):
            mark(node)
        elif isinstance(node, ast.Assign) and any(
                isinstance(t, ast.Name) and t.id == "__all__" for t in node.targets):
            mark(node)
    return skip


def _alternatives(node: ast.AST) -> List[Tuple[str, str]]:
    """(kind, change) for every mutation of ``node`` alone (its children are other points)."""
    out: List[Tuple[str, str]] = []
    if isinstance(node, ast.Compare) and len(node.ops) == 1:
        op = type(node.ops[0])
        for new in _COMPARE_SWAPS.get(op, ()):
            out.append(("compare", f"{_SYMBOL[op]} -> {_SYMBOL[new]}"))
    elif isinstance(node, ast.BinOp):
        op = type(node.op)
        for new in _BINOP_SWAPS.get(op, ()):
            out.append(("binop", f"{_SYMBOL[op]} -> {_SYMBOL[new]}"))
    elif isinstance(node, ast.AugAssign):
        op = type(node.op)
        for new in _BINOP_SWAPS.get(op, ()):
            out.append(("augassign", f"{_SYMBOL[op]}= -> {_SYMBOL[new]}="))
        if op in _SYMBOL:
            out.append(("augassign", f"{_SYMBOL[op]}= -> ="))
    elif isinstance(node, ast.BoolOp):
        op = type(node.op)
        out.append(("boolop", f"{_SYMBOL[op]} -> {'or' if op is ast.And else 'and'}"))
    elif isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.Not)):
        out.append(("unary", "remove unary -" if isinstance(node.op, ast.USub) else "remove not"))
    elif isinstance(node, ast.Constant) and not isinstance(node.value, (str, bytes)) \
            and node.value is not None and node.value is not Ellipsis:
        value = node.value
        if isinstance(value, bool):
            out.append(("constant", f"{value} -> {not value}"))
        elif isinstance(value, (int, float)):
            new = 1 if value == 0 else (0 if value == 1 else value + 1)
            out.append(("constant", f"{value!r} -> {type(value)(new)!r}"))
    elif isinstance(node, ast.Name) and node.id in _NAME_SWAPS and isinstance(node.ctx, ast.Load):
        out.append(("name", f"{node.id} -> {_NAME_SWAPS[node.id]}"))
    elif isinstance(node, ast.Attribute) and node.attr in _NAME_SWAPS and isinstance(node.ctx, ast.Load):
        out.append(("name", f".{node.attr} -> .{_NAME_SWAPS[node.attr]}"))
    elif isinstance(node, ast.Return) and node.value is not None and not (
            isinstance(node.value, ast.Constant) and node.value.value is None):
        out.append(("return", "return ... -> return None"))
    return out


def _walk(tree: ast.AST) -> List[ast.AST]:
    """Every node in a deterministic order (ast.walk is breadth-first and stable)."""
    return list(ast.walk(tree))


def list_mutants(source: str) -> List[Mutant]:
    """Every mutation point of ``source``, in walk order (deterministic)."""
    tree = ast.parse(source)
    skip = _skipped_nodes(tree)
    mutants = []
    for index, node in enumerate(_walk(tree)):
        if id(node) in skip:
            continue
        for option, (kind, change) in enumerate(_alternatives(node)):
            mutants.append(Mutant(index, getattr(node, "lineno", 0), getattr(node, "col_offset", 0),
                                  kind, change, option))
    return mutants


def apply_mutant(source: str, mutant: Mutant) -> str:
    """The source of the module with ``mutant`` applied (``ast.unparse``; the original is
    untouched)."""
    tree = ast.parse(source)
    node = _walk(tree)[mutant.index]
    option = mutant.option
    if isinstance(node, ast.Compare):
        node.ops = [_COMPARE_SWAPS[type(node.ops[0])][option]()]
    elif isinstance(node, ast.BinOp):
        node.op = _BINOP_SWAPS[type(node.op)][option]()
    elif isinstance(node, ast.AugAssign):
        swaps = _BINOP_SWAPS.get(type(node.op), ())
        if option < len(swaps):
            node.op = swaps[option]()
        else:  # x op= y -> x = y
            replacement = ast.Assign(targets=[copy.deepcopy(node.target)], value=node.value)
            _replace(tree, node, replacement)
    elif isinstance(node, ast.BoolOp):
        node.op = ast.Or() if isinstance(node.op, ast.And) else ast.And()
    elif isinstance(node, ast.UnaryOp):
        _replace(tree, node, node.operand)
    elif isinstance(node, ast.Constant):
        value = node.value
        if isinstance(value, bool):
            node.value = not value
        else:
            node.value = type(value)(1 if value == 0 else (0 if value == 1 else value + 1))
    elif isinstance(node, ast.Name):
        node.id = _NAME_SWAPS[node.id]
    elif isinstance(node, ast.Attribute):
        node.attr = _NAME_SWAPS[node.attr]
    elif isinstance(node, ast.Return):
        node.value = ast.Constant(value=None)
    else:
        raise ValueError(f"node {index_name(node)} has no mutation {mutant}")
    return ast.unparse(ast.fix_missing_locations(tree))


def index_name(node: ast.AST) -> str:
    return type(node).__name__


def _replace(tree: ast.AST, old: ast.AST, new: ast.AST) -> None:
    """Put ``new`` where ``old`` is in its parent (a field or an element of a list field)."""
    for parent in ast.walk(tree):
        for field, value in ast.iter_fields(parent):
            if value is old:
                setattr(parent, field, new)
                return
            if isinstance(value, list):
                for i, item in enumerate(value):
                    if item is old:
                        value[i] = new
                        return
    raise ValueError("node to replace not found")


def sample_mutants(mutants: Sequence[Mutant], count: int, seed: int) -> List[Mutant]:
    """``count`` mutants drawn with ``seed`` (all when there are fewer), in source order."""
    chosen = mutants if count >= len(mutants) else random.Random(seed).sample(list(mutants), count)
    return sorted(chosen, key=lambda m: (m.line, m.col, m.index, m.option))


def load_equivalent(path: str = EQUIVALENT_FILE) -> Dict[str, str]:
    """``{mutant key: reason}`` from the equivalent-mutants file (``key  # reason`` lines)."""
    equivalent: Dict[str, str] = {}
    if not os.path.exists(path):
        return equivalent
    with open(path, encoding="utf-8") as f:
        for number, raw in enumerate(f, 1):
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            key, sep, reason = line.partition("  # ")
            if not sep or not reason.strip():
                raise ValueError(f"{path}:{number}: expected 'path:line:col change  # reason', got {line!r}")
            equivalent[key.strip()] = reason.strip()
    return equivalent


_SITECUSTOMIZE = '''\
# written by tools/mutation_test.py: import LANGNAV_MUTANT_MODULE from LANGNAV_MUTANT_FILE
import importlib.abc, importlib.util, os, sys
_NAME, _FILE = os.environ.get("LANGNAV_MUTANT_MODULE"), os.environ.get("LANGNAV_MUTANT_FILE")
class _MutantFinder(importlib.abc.MetaPathFinder):
    def find_spec(self, fullname, path=None, target=None):
        if _NAME and fullname == _NAME:
            return importlib.util.spec_from_file_location(fullname, _FILE)
        return None
sys.meta_path.insert(0, _MutantFinder())
'''


class Outcome(NamedTuple):
    status: str  # killed, survived, timeout
    seconds: float


#: third-party modules imported once by the parent and shared by every forked test run
PRELOAD = ("numpy", "scipy.ndimage", "scipy.sparse.csgraph", "torch", "pytest", "hypothesis",
           "_hypothesis_pytestplugin", "pytest_benchmark.plugin", "anyio.pytest_plugin",
           "pytest_timeout", "_pytest.pytester")


def preload() -> None:
    """Import the heavy libraries once: every mutant's test run is a fork of this process,
    so it starts in milliseconds instead of re-importing torch (seconds on a loaded machine).
    Nothing of langnav is imported here, so each fork imports the project afresh."""
    import importlib

    for name in PRELOAD:
        try:
            importlib.import_module(name)
        except ImportError:
            pass


def _child(overlay: str, env: Dict[str, str], args: List[str]) -> int:
    """In the forked child: redirect the import, silence output, run pytest."""
    os.setpgid(0, 0)  # own process group: a timeout kills its workers too
    os.environ.clear()
    os.environ.update(env)
    os.chdir(ROOT)
    sys.path[:0] = [overlay, ROOT]
    exec(compile(_SITECUSTOMIZE, "sitecustomize", "exec"), {"__name__": "sitecustomize"})
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 1)
    os.dup2(devnull, 2)
    import pytest

    return int(pytest.main(args))


def run_tests(module_path: str, source: str, tests: Sequence[str], timeout: float,
              workdir: str, extra_args: Sequence[str] = (), fork: bool = True) -> Outcome:
    """Run ``tests`` with ``module_path``'s import redirected to ``source`` (a temp file):
    in a fork of this process (``fork``; see :func:`preload`) or a fresh interpreter."""
    overlay = tempfile.mkdtemp(prefix="mutant_", dir=workdir)
    try:
        with open(os.path.join(overlay, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(_SITECUSTOMIZE)
        mutant_file = os.path.join(overlay, os.path.basename(module_path))
        with open(mutant_file, "w", encoding="utf-8") as f:
            f.write(source)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join([overlay, ROOT] + (
            [env["PYTHONPATH"]] if env.get("PYTHONPATH") else []))
        env["LANGNAV_MUTANT_MODULE"] = module_path[:-3].replace("/", ".")
        env["LANGNAV_MUTANT_FILE"] = mutant_file
        env.setdefault("OMP_NUM_THREADS", "1")
        args = ["-x", "-q", "-p", "no:cacheprovider", "-m", "not slow", *extra_args, *tests]
        start = time.monotonic()
        sys.stdout.flush()
        sys.stderr.flush()
        if fork and hasattr(os, "fork"):
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                code = 99
                try:
                    code = _child(overlay, env, args)
                finally:
                    os._exit(code)
            try:
                os.setpgid(pid, pid)
            except OSError:  # the child already did it (or has exited)
                pass
        else:
            pid = subprocess.Popen([sys.executable, "-m", "pytest", *args], cwd=ROOT, env=env,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   start_new_session=True).pid
        while True:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                rc = os.waitstatus_to_exitcode(status)
                return Outcome("survived" if rc == 0 else "killed", time.monotonic() - start)
            if time.monotonic() - start > timeout:
                try:
                    os.killpg(pid, signal.SIGKILL)
                except ProcessLookupError:
                    os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return Outcome("timeout", time.monotonic() - start)
            time.sleep(0.05)
    finally:
        shutil.rmtree(overlay, ignore_errors=True)


def mutate_module(module_path: str, count: int, seed: int, tests: Optional[Sequence[str]] = None,
                  timeout_factor: float = 3.0, min_timeout: float = 30.0,
                  equivalent: Optional[Dict[str, str]] = None, log=print,
                  only: Sequence[str] = ()) -> Dict[str, object]:
    """Sample and run the mutants of one module -> a summary dict (see :func:`main`).
    ``only``: run just the mutants with these keys (e.g. a previous run's survivors)."""
    full = os.path.join(ROOT, module_path)
    with open(full, encoding="utf-8") as f:
        source = f.read()
    tests = tuple(tests if tests is not None else MODULES[module_path])
    equivalent = load_equivalent() if equivalent is None else equivalent
    lines = source.splitlines()
    points = list_mutants(source)
    sample = sample_mutants(points, count, seed)
    if only:
        by_key = {m.key(module_path): m for m in points}
        missing = [key for key in only if key not in by_key]
        if missing:
            raise ValueError(f"not a mutant of {module_path}: {missing[0]!r} (see --list)")
        sample = sample_mutants([by_key[key] for key in only], len(only), seed)
    workdir = tempfile.mkdtemp(prefix="langnav_mutation_")
    preload()
    try:
        baseline = run_tests(module_path, source, tests, timeout=3600, workdir=workdir)
        if baseline.status != "survived":
            raise RuntimeError(f"the unmutated tests of {module_path} fail ({' '.join(tests)}); fix them first")
        timeout = max(min_timeout, timeout_factor * baseline.seconds)
        log(f"{module_path}: {len(points)} mutation points, {len(sample)} sampled (seed {seed}); "
            f"tests {' '.join(tests)} take {baseline.seconds:.1f} s unmutated, timeout {timeout:.0f} s")
        results: List[Tuple[Mutant, str]] = []
        for number, mutant in enumerate(sample, 1):
            key = mutant.key(module_path)
            if key in equivalent:
                status = "equivalent"
            else:
                status = run_tests(module_path, apply_mutant(source, mutant), tests, timeout, workdir).status
            results.append((mutant, status))
            log(f"  [{number}/{len(sample)}] {status:10s} {key}")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    counts = {s: sum(1 for _, r in results if r == s) for s in ("killed", "survived", "timeout", "equivalent")}
    scored = counts["killed"] + counts["survived"] + counts["timeout"]
    score = (counts["killed"] + counts["timeout"]) / scored if scored else None
    return {"module": module_path, "points": len(points), "sampled": len(sample), **counts,
            "score": score, "survivors": [f"{m.key(module_path)}    | {lines[m.line - 1].strip()}"
                                          for m, r in results if r == "survived"]}


def main(argv: Optional[Sequence[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("modules", nargs="*", default=list(MODULES),
                        help="repo-relative module paths (default: every module of MODULES)")
    parser.add_argument("--mutants", type=int, default=40, help="mutants sampled per module")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed")
    parser.add_argument("--timeout-factor", type=float, default=3.0,
                        help="a mutant times out after this many times the unmutated tests' time")
    parser.add_argument("--list", action="store_true", help="print every mutation point and exit")
    parser.add_argument("--only", action="append", default=[], metavar="KEY",
                        help="run only this mutant ('path:line:col change' as printed; repeatable), "
                             "e.g. a previous run's survivors after adding a test")
    args = parser.parse_args(argv)
    if args.mutants <= 0:
        parser.error(f"--mutants must be positive, got {args.mutants}")
    for module in args.modules:
        if module not in MODULES:
            parser.error(f"unknown module {module!r}; known: {', '.join(MODULES)}")
    if args.list:
        for module in args.modules:
            with open(os.path.join(ROOT, module), encoding="utf-8") as f:
                for mutant in list_mutants(f.read()):
                    print(mutant.key(module))
        return 0
    summaries = []
    for module in args.modules:
        only = [key for key in args.only if key.startswith(module + ":")]
        try:
            summary = mutate_module(module, args.mutants, args.seed,
                                    timeout_factor=args.timeout_factor, only=only)
        except (RuntimeError, ValueError, OSError) as error:  # one line, no traceback
            parser.exit(2, f"{parser.prog}: error: {error}\n")
        summaries.append(summary)
        for key in summary["survivors"]:
            print(f"SURVIVED {key}")
        print(f"{module}: killed {summary['killed']}, timed out {summary['timeout']}, survived "
              f"{summary['survived']}, equivalent {summary['equivalent']} -> score "
              + ("n/a" if summary["score"] is None else f"{100 * summary['score']:.0f}%"), flush=True)
    if len(summaries) > 1:
        print("\n| module | sampled | killed | timed out | survived | equivalent | score |\n|---|---|---|---|---|---|---|")
        for s in summaries:
            score = "n/a" if s["score"] is None else f"{100 * s['score']:.0f}%"
            print(f"| {s['module']} | {s['sampled']} | {s['killed']} | {s['timeout']} | "
                  f"{s['survived']} | {s['equivalent']} | {score} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
