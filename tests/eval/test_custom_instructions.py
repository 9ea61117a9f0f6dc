"""``langnav eval --instructions FILE.json`` (a user's own instructions, exactly the episodes
the file names, unknown words counted, the file's content part of the run identity) and
``langnav eval --episode-ids``, end to end on the tiny dataset with a real checkpoint."""
from __future__ import annotations

import json
import os

import pytest
import torch

from agent.algos.checkpoint import checkpoint_name, save_checkpoint
from agent.algos.config import load_train_config
from agent.cli import main
from agent.config import config_to_dict
from agent.datasets.episodes import load_split, split_paths
from agent.datasets.vocab import UNK_TOKEN
from agent.models.policy import build_policy
from eval.evaluator import with_instructions
from tests.algos.small_model import SMALL_MODEL

UNKNOWN = ("giraffe", "trampoline")


@pytest.fixture(scope="module")
def stopper(tiny_dataset, tmp_path_factory):
    """A real checkpoint of a small GloVe/LSTM policy whose STOP wins every argmax (episodes
    end at once: the evaluation costs one step each)."""
    root = tmp_path_factory.mktemp("stopper")
    cfg = load_train_config(None, [f"data_dir={tiny_dataset}", f"out_dir={root}",
                                   "backend.width=64", "backend.height=64", "name=stopper",
                                   "model.instruction_encoder.type=glove_lstm", *SMALL_MODEL])
    vocab = load_split(split_paths(tiny_dataset, "val_seen")[0])[1]
    torch.manual_seed(0)
    policy = build_policy(cfg.model, vocab)
    with torch.no_grad():
        policy.action_head.bias.copy_(torch.tensor([50.0, 0.0, 0.0, 0.0]))
    return save_checkpoint(
        os.path.join(str(root), "checkpoints", checkpoint_name(1, 10)), trainer="bc",
        config=config_to_dict(cfg), policy=policy, vocab=vocab,
        observation={"width": 64, "height": 64, "backend": {"backend": "houses"}},
        data_dir=tiny_dataset, counters={"updates": 1, "training_frames": 10, "samples": 10,
                                         "wall_time_s": 1.0})


def _eval(checkpoint, data, out, *extra):
    return main(["eval", "--agent", checkpoint, "--data", data, "--split", "val_seen",
                 "--out", str(out), "--num-envs", "1", *extra])


def test_user_instructions_run_on_exactly_their_episodes(stopper, tiny_dataset, tmp_path, capsys):
    episodes, vocab = load_split(split_paths(tiny_dataset, "val_seen")[0])
    assert not any(w in vocab.word_list for w in UNKNOWN)
    first, other = str(episodes[4]["episode_id"]), str(episodes[1]["episode_id"])
    texts = {first: f"Walk past the {UNKNOWN[0]} and stop by the {UNKNOWN[1]}.",
             other: "Turn left and stop."}
    path = tmp_path / "mine.json"
    path.write_text(json.dumps(texts))
    out = tmp_path / "run"
    assert _eval(stopper, tiny_dataset, out, "--instructions", str(path)) == 0
    printed = capsys.readouterr().out
    assert f"1 of 2 instructions hold words the agent does not know: {', '.join(UNKNOWN)}" \
        in printed
    with open(out / "stats_val_seen.json") as f:
        stats = json.load(f)
    assert list(stats["episodes"]) == [other, first]  # the split's order
    run = stats["run"]
    assert run["instructions"] == "file"
    assert run["instruction_file"]["path"] == str(path) and run["instruction_file"]["episodes"] == 2
    encoding = run["instruction_encoding"]
    assert encoding["with_unknown_words"] == 1 and encoding["instructions"] == 2
    assert encoding["unknown_words"] == {UNKNOWN[0]: 1, UNKNOWN[1]: 1}
    # what the environment hands the agent: the text in the dataset's words, UNK for the rest
    chosen = with_instructions(episodes, texts, vocab, "val_seen")
    decoded = vocab.decode(chosen[1]["instruction"]["instruction_tokens"]).split()
    assert decoded == ["walk", "past", "the", UNK_TOKEN, "and", "stop", "by", "the", UNK_TOKEN]

    # the file's content is part of the run identity: other texts into the same run dir fail
    path.write_text(json.dumps(dict(texts, **{other: "Turn right and stop."})))
    assert _eval(stopper, tiny_dataset, out, "--instructions", str(path)) == 2
    err = capsys.readouterr().err
    assert "made by another run" in err and "instructions.file_sha1" in err
    # and so is the mode: the same directory evaluated with the dataset's instructions
    assert _eval(stopper, tiny_dataset, out) == 2
    assert "instructions" in capsys.readouterr().err


def test_episode_ids_and_bad_instruction_files(stopper, tiny_dataset, tmp_path, capsys):
    episodes, _ = load_split(split_paths(tiny_dataset, "val_seen")[0])
    ids = [str(episodes[7]["episode_id"]), str(episodes[2]["episode_id"])]
    out = tmp_path / "ids"
    assert _eval(stopper, tiny_dataset, out, "--episode-ids", ",".join(ids)) == 0
    with open(out / "stats_val_seen.json") as f:
        stats = json.load(f)
    assert sorted(stats["episodes"]) == sorted(ids) and stats["run"]["episode_ids"] == ids
    capsys.readouterr()
    assert _eval(stopper, tiny_dataset, tmp_path / "x", "--episode-ids", "99999") == 2
    assert "no episode '99999'" in capsys.readouterr().err
    assert main(["eval", "--agent", stopper, "--data", tiny_dataset, "--split",
                 "val_seen,val_unseen", "--out", str(tmp_path / "y"), "--episode-ids", "1"]) == 2
    assert "one split" in capsys.readouterr().err
    bad = tmp_path / "bad.json"
    for content, message in (("{not json", "not valid JSON"), ("[]", "JSON object"),
                             ('{"1": 3}', "episode '1': the instruction must be a non-empty"),
                             ('{"99999": "go"}', "no episode '99999'")):
        bad.write_text(content)
        assert _eval(stopper, tiny_dataset, tmp_path / "z", "--instructions", str(bad)) == 2
        assert message in capsys.readouterr().err, content
    with pytest.raises(SystemExit) as exit_info:
        _eval(stopper, tiny_dataset, tmp_path / "z", "--instructions", "mine.txt")
    assert exit_info.value.code == 2
    assert "must be normal, shuffled or a FILE.json" in capsys.readouterr().err
