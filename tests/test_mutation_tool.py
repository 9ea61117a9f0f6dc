"""tools/mutation_test.py: deterministic mutants, a bad mutant is killed, the file on disk
is never changed, the equivalent-mutants list names mutants that exist."""
from __future__ import annotations

import hashlib
import os
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tools"))
import mutation_test as mt  # noqa: E402

TINY = '''\
"""docstring 1 + 1"""
LIMIT: int = 3


def below(a, b):
    """a < b"""
    if b is None:
        raise ValueError(f"no bound {a + 1}")
    return a < b and -a <= LIMIT * 2


def biggest(values):
    total = 0
    total += max(values)
    return total
'''


def test_mutants_are_listed_and_sampled_deterministically():
    mutants = mt.list_mutants(TINY)
    changes = [(m.line, m.change) for m in mutants]
    assert changes == [(m.line, m.change) for m in mt.list_mutants(TINY)]
    # docstrings, annotations and raise messages are never mutated
    assert all(m.line not in (1, 2, 6, 8) or m.kind == "constant" for m in mutants)
    assert not any(m.line in (1, 6, 8) for m in mutants)
    assert {"< -> <=", "< -> >", "and -> or", "remove unary -", "* -> /", "2 -> 3", "3 -> 4",
            "+= -> -=", "+= -> =", "max -> min", "0 -> 1", "is -> is not",
            "return ... -> return None"} <= {m.change for m in mutants}
    first = mt.sample_mutants(mutants, 5, seed=0)
    assert first == mt.sample_mutants(mutants, 5, seed=0)
    assert first != mt.sample_mutants(mutants, 5, seed=1)
    assert mt.sample_mutants(mutants, 1000, seed=0) == sorted(
        mutants, key=lambda m: (m.line, m.col, m.index, m.option))


def test_each_mutant_changes_behaviour_at_its_point_only():
    def run(source):
        namespace = {}
        exec(compile(source, "tiny", "exec"), namespace)
        return namespace["below"](1, 1), namespace["biggest"]([2, 5])

    assert run(TINY) == (False, 5)
    by_change = {m.change: m for m in mt.list_mutants(TINY)}
    assert run(mt.apply_mutant(TINY, by_change["< -> <="])) == (True, 5)
    assert run(mt.apply_mutant(TINY, by_change["max -> min"])) == (False, 2)
    assert run(mt.apply_mutant(TINY, by_change["+= -> -="])) == (False, -5)


def test_a_bad_mutant_is_killed_and_the_module_on_disk_is_unchanged(tmp_path):
    module = "eval/metrics.py"
    path = os.path.join(ROOT, module)
    with open(path, "rb") as f:
        before = f.read()
    source = before.decode()
    returns = [m for m in mt.list_mutants(source) if m.change == "return ... -> return None"]
    path_length = next(m for m in returns if "np.linalg.norm(np.diff" in source.splitlines()[m.line - 1])
    test = ["tests/eval/test_metrics.py::test_sr_at_1m_fails_between_1_and_2_m_where_sr_succeeds"]
    killed = mt.run_tests(module, mt.apply_mutant(source, path_length), test, timeout=600,
                          workdir=str(tmp_path), fork=False)
    assert killed.status == "killed"
    survived = mt.run_tests(module, source, test, timeout=600, workdir=str(tmp_path), fork=False)
    assert survived.status == "survived"
    with open(path, "rb") as f:
        assert hashlib.sha1(f.read()).hexdigest() == hashlib.sha1(before).hexdigest()
    assert os.listdir(tmp_path) == []  # the overlays are removed


def test_every_listed_equivalent_mutant_exists_in_the_current_source():
    equivalent = mt.load_equivalent()
    assert equivalent, "tools/mutation_equivalent.txt lists no mutant"
    for key, reason in equivalent.items():
        module = key.split(":", 1)[0]
        assert module in mt.MODULES, key
        with open(os.path.join(ROOT, module), encoding="utf-8") as f:
            keys = {m.key(module) for m in mt.list_mutants(f.read())}
        assert key in keys, f"{key} is no longer a mutant of {module}: update the list"
        assert reason


def test_a_malformed_equivalent_line_is_an_error_naming_the_line(tmp_path):
    bad = tmp_path / "equivalent.txt"
    bad.write_text("# comment\neval/metrics.py:1:0 3.0 -> 4.0\n")
    with pytest.raises(ValueError, match="equivalent.txt:2"):
        mt.load_equivalent(str(bad))
