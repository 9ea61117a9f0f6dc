"""The ``langnav`` command's help and messages (issue #19): every option has help text and
shows its default, an unknown option is reported as such, errors name the file of the
split asked for and list the ids there are, ``data validate`` reads plain ``.json``."""
from __future__ import annotations

import argparse
import gzip
import os
import shutil

import pytest

from agent.cli import build_parser, main


def _leaf_parsers(parser: argparse.ArgumentParser, prefix: str = "langnav"):
    """(command, parser) of every subcommand that takes options (no further subcommands)."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        yield prefix, parser
        return
    for name, child in subs[0].choices.items():
        yield from _leaf_parsers(child, f"{prefix} {name}")


def test_every_option_has_help_and_shows_its_default():
    missing = []
    for command, parser in _leaf_parsers(build_parser()):
        formatter = parser._get_formatter()
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            name = "/".join(action.option_strings) or action.dest
            if not (action.help or "").strip():
                missing.append(f"{command} {name}: no help")
                continue
            shown = formatter._get_help_string(action) % dict(vars(action), prog=parser.prog)
            needs_default = (action.option_strings and not action.required
                             and not isinstance(action, argparse._StoreTrueAction))
            if needs_default and "default" not in shown:
                missing.append(f"{command} {name}: default not shown ({shown!r})")
    assert not missing, "\n".join(missing)
    page = build_parser()._subparsers._group_actions[0].choices["rollout"].format_help()
    assert "--fps FPS" in page and "(default: 8)" in page


def test_unknown_option_is_reported_before_missing_required_ones(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["eval", "--agnet", "random", "--out", "x"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2
    assert "unknown option --agnet (did you mean --agent?)" in err and "required" not in err
    with pytest.raises(SystemExit):
        main(["rollout", "--agent", "expert", "--out", "x", "--episdoes=2"])
    assert "unknown option --episdoes (did you mean --episodes?)" in capsys.readouterr().err
    # abbreviations of known options and negative numbers still parse
    args = build_parser().parse_args(["data", "build", "--out", "d", "--see", "-3"])
    assert args.seed == -3


def test_missing_split_names_its_own_file_and_the_splits_there_are(tiny_dataset, tmp_path, capsys):
    missing = str(tmp_path / "nowhere")
    assert main(["eval", "--agent", "random", "--data", missing, "--split", "val_seen",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert os.path.join(missing, "val_seen", "val_seen.json.gz") in err and "train" not in err
    assert main(["eval", "--agent", "random", "--data", tiny_dataset, "--split", "val_sen",
                 "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert os.path.join(tiny_dataset, "val_sen", "val_sen.json.gz") in err
    assert "holds splits: train, val_seen, val_unseen" in err
    assert not os.path.exists(tmp_path / "run")


def test_unknown_episode_ids_list_the_ids_there_are(tiny_dataset, tmp_path, capsys):
    assert main(["data", "show", tiny_dataset, "--split", "val_unseen", "--episode", "999",
                 "--out", str(tmp_path / "x.png")]) == 2
    err = capsys.readouterr().err
    assert "no episode '999' in" in err and "val_unseen.json.gz (36 episodes; ids 1-36)" in err
    assert main(["rollout", "--agent", "expert", "--data", tiny_dataset, "--split", "val_unseen",
                 "--episode-ids", "2,999", "--out", str(tmp_path / "videos")]) == 2
    assert "no episode '999' in" in capsys.readouterr().err
    assert not os.path.exists(tmp_path / "x.png")


def test_data_validate_reads_plain_json(tiny_dataset, tmp_path, capsys):
    split_dir = tmp_path / "val_unseen"
    split_dir.mkdir()
    for name in ("val_unseen", "val_unseen_gt"):
        with gzip.open(os.path.join(tiny_dataset, "val_unseen", f"{name}.json.gz"), "rb") as f:
            (split_dir / f"{name}.json").write_bytes(f.read())
    assert main(["data", "validate", str(split_dir / "val_unseen.json")]) == 0
    out = capsys.readouterr().out
    assert f"(ground truth {split_dir / 'val_unseen_gt.json'})" in out
    assert "OK: 1 file(s), 36 episodes, 0 errors" in out
    assert main(["data", "validate", str(split_dir)]) == 0     # a split dir holding X/X.json
    assert "36 episodes" in capsys.readouterr().out
    (split_dir / "val_unseen.json").write_text("{not json")
    assert main(["data", "validate", str(split_dir / "val_unseen.json")]) == 1
    assert "not valid JSON" in capsys.readouterr().out
    shutil.rmtree(split_dir)
