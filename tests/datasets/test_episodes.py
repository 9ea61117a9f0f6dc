"""Episode files and vocabulary: the real VLN-CE format reads, write→load is lossless and
byte-deterministic, bad files fail with one message naming the file."""
from __future__ import annotations

import copy
import gzip
import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np
import pytest

from agent.datasets.episodes import (DatasetFormatError, episode_key, gt_path_beside,
                                     house_of, index_by_id, load_gt, load_split,
                                     read_json_gz, split_paths, write_gt, write_split)
from agent.datasets.vocab import Vocab, tokenize

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "vlnce_r2r"
VAL_UNSEEN = FIXTURE / "val_unseen" / "val_unseen.json.gz"
VAL_UNSEEN_GT = FIXTURE / "val_unseen" / "val_unseen_gt.json.gz"
TEST_SPLIT = FIXTURE / "test" / "test.json.gz"


# ---------------------------------------------------------------------------- vocabulary
def test_tokenize_keeps_lowercase_letter_runs_only():
    assert tokenize("Walk out, turn LEFT; stop at the 2nd door.") == \
        ["walk", "out", "turn", "left", "stop", "at", "the", "nd", "door"]
    assert tokenize("") == []


def test_vocab_from_texts_layout_matches_habitat_vocabdict_habits():
    vocab = Vocab.from_texts(["Turn left and stop.", "walk past the sofa, then turn"])
    words = vocab.word_list
    # habitat-lab's VocabDict keeps a list that already holds lower-case "<unk>" and then
    # finds PAD_INDEX/UNK_INDEX by name; VLN-CE's files put "<pad>", "<unk>" first.
    assert words[:2] == ["<pad>", "<unk>"]
    assert words[2:] == sorted(["turn", "left", "and", "stop", "walk", "past", "the", "sofa", "then"])
    assert words.index("<pad>") == Vocab.PAD_INDEX == 0
    assert words.index("<unk>") == Vocab.UNK_INDEX == 1
    assert len(vocab) == 11


def test_vocab_min_count_drops_rare_words():
    vocab = Vocab.from_texts(["go left", "go right", "go left"], min_count=2)
    assert vocab.word_list == ["<pad>", "<unk>", "go", "left"]


def test_vocab_encode_pads_truncates_and_maps_unknown_words():
    vocab = Vocab.from_texts(["turn left then stop"])
    ids = vocab.encode("Turn LEFT, then jump!")
    assert len(ids) == 200
    assert ids[:4] == [vocab.word_index("turn"), vocab.word_index("left"),
                       vocab.word_index("then"), Vocab.UNK_INDEX]
    assert set(ids[4:]) == {Vocab.PAD_INDEX}
    assert vocab.encode("turn left then stop turn", max_len=3) == \
        [vocab.word_index(w) for w in ("turn", "left", "then")]
    assert vocab.encode("stop", max_len=None) == [vocab.word_index("stop")]


def test_vocab_decode_inverts_encode_and_rejects_foreign_ids():
    vocab = Vocab.from_texts(["walk to the kitchen and stop"])
    ids = vocab.encode("Walk to the kitchen, and STOP")
    assert vocab.decode(ids) == "walk to the kitchen and stop"
    assert vocab.decode(np.asarray(ids, dtype=np.int64)) == "walk to the kitchen and stop"
    assert vocab.decode(vocab.encode("walk to the garage")) == "walk to the <unk>"
    with pytest.raises(ValueError, match="token id 99"):
        vocab.decode([2, 99])


def test_vocab_dict_round_trip_has_every_habitat_key():
    vocab = Vocab.from_texts(["exit the bedroom", "wait by the stairs"])
    d = vocab.to_dict()
    assert set(d) == {"word_list", "word2idx_dict", "itos", "stoi", "num_vocab",
                      "UNK_INDEX", "PAD_INDEX"}
    assert d["itos"] == d["word_list"] and d["num_vocab"] == len(d["word_list"])
    assert d["stoi"] == d["word2idx_dict"] == {w: i for i, w in enumerate(d["word_list"])}
    assert (d["UNK_INDEX"], d["PAD_INDEX"]) == (1, 0)
    again = Vocab.from_dict(json.loads(json.dumps(d)))
    assert again == vocab and again.sha1 == vocab.sha1


def test_vocab_from_dict_rejects_inconsistent_dicts():
    d = Vocab.from_texts(["go up the stairs"]).to_dict()
    with pytest.raises(ValueError, match="num_vocab"):
        Vocab.from_dict(dict(d, num_vocab=99))
    with pytest.raises(ValueError, match="word_list"):
        Vocab.from_dict({k: v for k, v in d.items() if k != "word_list"})
    with pytest.raises(ValueError, match="entry 0"):
        Vocab.from_dict({"word_list": ["go", "<unk>", "up"]})
    with pytest.raises(ValueError, match="stoi"):
        Vocab.from_dict(dict(d, stoi={"go": 5}))
    # word_list alone is what habitat-lab reads; it is enough
    assert Vocab.from_dict({"word_list": d["word_list"]}).word_list == d["word_list"]


def test_vocab_sha1_identifies_the_word_list():
    a = Vocab.from_texts(["turn left", "go up"])
    b = Vocab.from_texts(["go up", "turn left", "go"])
    c = Vocab.from_texts(["turn right", "go up"])
    assert a.sha1 == b.sha1
    assert a.sha1 != c.sha1
    assert a.sha1 == hashlib.sha1(json.dumps(a.word_list).encode("utf-8")).hexdigest()


# ---------------------------------------------------------------------------- reading the real format
def test_load_split_reads_the_vlnce_fixture_with_integer_ids():
    episodes, vocab = load_split(VAL_UNSEEN)
    assert [ep["episode_id"] for ep in episodes] == [1, 2, 3, 17]
    assert all(isinstance(ep["episode_id"], int) for ep in episodes)
    assert {ep["trajectory_id"] for ep in episodes[:3]} == {4}
    assert len(vocab) == 45
    for ep in episodes:
        tokens = ep["instruction"]["instruction_tokens"]
        assert len(tokens) == 200
        assert vocab.decode(tokens) == " ".join(tokenize(ep["instruction"]["instruction_text"]))
    assert [house_of(ep) for ep in episodes] == ["8WUmhLawc2A"] * 3 + ["zsNo4HB9uLZ"]


def test_load_split_reads_a_test_split_without_goals():
    episodes, vocab = load_split(TEST_SPLIT)
    assert [episode_key(ep) for ep in episodes] == ["5", "6"]
    assert all("goals" not in ep and "reference_path" not in ep for ep in episodes)
    assert vocab == load_split(VAL_UNSEEN)[1]


def test_load_gt_is_keyed_by_str_episode_id():
    gt = load_gt(VAL_UNSEEN_GT)
    episodes, _ = load_split(VAL_UNSEEN)
    assert sorted(gt) == sorted(episode_key(ep) for ep in episodes)
    entry = gt["17"]
    assert entry["actions"][-1] == 0
    assert entry["forward_steps"] == entry["actions"].count(1)


# ---------------------------------------------------------------------------- writing
def test_write_then_load_is_identical(tmp_path):
    episodes, vocab = load_split(VAL_UNSEEN)
    gt = load_gt(VAL_UNSEEN_GT)
    ep_path, gt_path = split_paths(tmp_path, "val_unseen")
    write_split(ep_path, episodes, vocab)
    write_gt(gt_path, gt)
    episodes2, vocab2 = load_split(ep_path)
    assert episodes2 == episodes
    assert vocab2 == vocab and vocab2.to_dict() == vocab.to_dict()
    assert load_gt(gt_path) == gt


def test_string_episode_ids_survive_and_gt_keys_become_strings(tmp_path):
    episodes, vocab = load_split(VAL_UNSEEN)
    for ep in episodes:
        ep["episode_id"] = f"ep{ep['episode_id']}"
    path = tmp_path / "x.json.gz"
    write_split(path, episodes, vocab)
    assert [ep["episode_id"] for ep in load_split(path)[0]] == ["ep1", "ep2", "ep3", "ep17"]
    write_gt(tmp_path / "x_gt.json.gz", {7: {"locations": [[0, 0, 0]], "actions": [0],
                                             "forward_steps": 0}})
    assert list(load_gt(tmp_path / "x_gt.json.gz")) == ["7"]


def test_written_bytes_are_deterministic(tmp_path):
    episodes, vocab = load_split(VAL_UNSEEN)
    gt = load_gt(VAL_UNSEEN_GT)
    write_split(tmp_path / "a.json.gz", episodes, vocab)
    write_gt(tmp_path / "a_gt.json.gz", gt)
    time.sleep(1.1)  # a gzip header with a timestamp would differ now
    reordered = [dict(reversed(list(copy.deepcopy(ep).items()))) for ep in episodes]
    write_split(tmp_path / "b.json.gz", reordered, vocab)
    write_gt(tmp_path / "b_gt.json.gz", dict(reversed(list(gt.items()))))
    a, b = (tmp_path / "a.json.gz").read_bytes(), (tmp_path / "b.json.gz").read_bytes()
    assert a == b
    assert a[4:8] == b"\x00\x00\x00\x00"  # gzip MTIME field
    assert (tmp_path / "a_gt.json.gz").read_bytes() == (tmp_path / "b_gt.json.gz").read_bytes()


def test_numpy_values_are_written_as_plain_json(tmp_path):
    episodes, vocab = load_split(VAL_UNSEEN)
    ep = dict(episodes[0])
    ep["start_position"] = np.asarray(ep["start_position"], dtype=np.float64)
    ep["trajectory_id"] = np.int64(ep["trajectory_id"])
    ep["info"] = {"geodesic_distance": np.float32(6.5)}
    write_split(tmp_path / "n.json.gz", [ep], vocab)
    loaded = load_split(tmp_path / "n.json.gz")[0][0]
    assert loaded["start_position"] == episodes[0]["start_position"]
    assert loaded["trajectory_id"] == 4 and loaded["info"]["geodesic_distance"] == 6.5


def test_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    episodes, vocab = load_split(VAL_UNSEEN)
    path = tmp_path / "s.json.gz"
    write_split(path, episodes, vocab)
    before = path.read_bytes()
    bad = copy.deepcopy(episodes)
    bad[1]["info"]["geodesic_distance"] = float("nan")
    with pytest.raises(ValueError, match="s.json.gz"):
        write_split(path, bad, vocab)
    with pytest.raises(ValueError, match="duplicate episode id '1'"):
        write_split(path, [episodes[0], dict(episodes[1], episode_id="1")], vocab)
    assert path.read_bytes() == before
    assert sorted(os.listdir(tmp_path)) == ["s.json.gz"]


# ---------------------------------------------------------------------------- bad files
def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.json.gz"):
        load_split(tmp_path / "nope.json.gz")


@pytest.mark.parametrize("content, message", [
    (lambda raw: raw[: len(raw) // 2], "truncated gzip"),
    (lambda raw: b"this is not gzip at all", "not a readable gzip"),
    (lambda raw: gzip.compress(b'{"episodes": [1, 2'), "not valid JSON"),
    (lambda raw: gzip.compress(b"\xff\xfe\x00garbage"), "not UTF-8"),
])
def test_unreadable_files_name_the_file_and_the_fault(tmp_path, content, message):
    path = tmp_path / "broken.json.gz"
    path.write_bytes(content(VAL_UNSEEN.read_bytes()))
    with pytest.raises(DatasetFormatError, match=message) as info:
        load_split(path)
    assert str(path) in str(info.value)
    with pytest.raises(DatasetFormatError, match=message):
        load_gt(path)


@pytest.mark.parametrize("payload, message", [
    ([1, 2], "top level must be an object"),
    ({"instruction_vocab": {"word_list": ["<pad>", "<unk>"]}}, "missing top-level key 'episodes'"),
    ({"episodes": []}, "missing top-level key 'instruction_vocab'"),
    ({"episodes": {}, "instruction_vocab": {"word_list": ["<pad>", "<unk>"]}}, "must be a list"),
    ({"episodes": [], "instruction_vocab": {"itos": []}}, "instruction_vocab.word_list"),
])
def test_load_split_rejects_wrong_top_level(tmp_path, payload, message):
    path = tmp_path / "t.json.gz"
    path.write_bytes(gzip.compress(json.dumps(payload).encode()))
    with pytest.raises(DatasetFormatError, match=message):
        load_split(path)


# ---------------------------------------------------------------------------- helpers
def test_split_paths_and_gt_beside():
    ep_path, gt_path = split_paths("data/houses", "val_seen")
    assert ep_path == os.path.join("data/houses", "val_seen", "val_seen.json.gz")
    assert gt_path == os.path.join("data/houses", "val_seen", "val_seen_gt.json.gz")
    assert gt_path_beside(ep_path) == gt_path
    assert read_json_gz(VAL_UNSEEN)["episodes"][0]["episode_id"] == 1


def test_house_of_and_index_by_id():
    assert house_of({"scene_id": "mp3d/8WUmhLawc2A/8WUmhLawc2A.glb"}) == "8WUmhLawc2A"
    assert house_of({"scene_id": "data/houses/scenes/h0003/h0003.json"}) == "h0003"
    with pytest.raises(ValueError, match="no parent folder"):
        house_of({"episode_id": 3, "scene_id": "h0003.glb"})
    episodes = [{"episode_id": 1}, {"episode_id": "2"}]
    assert list(index_by_id(episodes)) == ["1", "2"]
    with pytest.raises(ValueError, match="duplicate episode id '1'"):
        index_by_id(episodes + [{"episode_id": "1"}])
