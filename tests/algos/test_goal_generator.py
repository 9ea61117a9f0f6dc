"""The variational goal generator on the real tiny dataset (expert stores recorded with the
real renderer and RGB encoder): training keeps the KL above zero (free bits, no posterior
collapse) and samples for one path differ; kill-and-resume is bit-identical; the
``langnav train`` / ``langnav describe`` path end to end; the KL and free-bits pieces."""
from __future__ import annotations

import json
import os

import pytest
import torch

from agent.algos.config import load_goal_generator_config
from agent.algos.goal_generator import (GoalGeneratorTrainer, evaluate_generator,
                                        free_bits_kl, kl_weight, load_generator)
from agent.cli import main
from agent.models.goal_generator import gaussian_kl

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO, "habitat_configs", "experiments", "goal_generator.yaml")

#: a small, fast generator on the tiny dataset (MobileNetV2 features[:7] at 64x64)
SMALL = ["backend.width=64", "backend.height=64", "rgb_encoder.layers=[7]",
         "rgb_encoder.grid_size=2", "model.rgb_pool=1", "model.depth_pool=2",
         "model.hidden_size=64", "model.word_embedding_size=32", "model.latent_size=8",
         "model.action_embedding_size=8", "model.dropout=0.0", "torch_threads=1",
         "num_envs=1", "progress=false", "log_interval=1"]


def gg_overrides(data_dir, out_dir, features_dir, *extra):
    return [f"data_dir={data_dir}", f"out_dir={out_dir}", f"features.cache_dir={features_dir}",
            *SMALL, *extra]


def gg_config(data_dir, out_dir, features_dir, *extra):
    return load_goal_generator_config(CONFIG, gg_overrides(data_dir, out_dir, features_dir, *extra))


@pytest.fixture(scope="module")
def features_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("gg_features"))


def test_gaussian_kl_and_free_bits_by_hand():
    mu_q, logvar_q = torch.tensor([[1.0, 0.0]]), torch.tensor([[0.0, 2.0 * 0.0]])
    mu_p, logvar_p = torch.tensor([[0.0, 0.0]]), torch.log(torch.tensor([[1.0, 4.0]]))
    kl = gaussian_kl(mu_q, logvar_q, mu_p, logvar_p)
    # N(1, 1) || N(0, 1) = 1/2; N(0, 1) || N(0, 4) = 1/2 (ln 4 + 1/4 - 1)
    expected = torch.tensor([[0.5, 0.5 * (torch.log(torch.tensor(4.0)) + 0.25 - 1.0)]])
    assert torch.allclose(kl, expected, atol=1e-6)
    assert float(gaussian_kl(mu_p, logvar_p, mu_p, logvar_p).abs().max()) < 1e-7
    two = torch.tensor([[0.02, 1.0], [0.04, 3.0]])  # batch means 0.03 and 2.0
    assert float(free_bits_kl(two, 0.1)) == pytest.approx(0.1 + 2.0)
    assert float(free_bits_kl(two, 0.0)) == pytest.approx(2.03)
    assert [kl_weight(u, 4, 1.0) for u in range(6)] == [0.25, 0.5, 0.75, 1.0, 1.0, 1.0]
    assert kl_weight(0, 0, 0.5) == 0.5


@pytest.fixture(scope="module")
def trained(tiny_dataset, features_dir, tmp_path_factory):
    out = tmp_path_factory.mktemp("gg_train")
    cfg = gg_config(tiny_dataset, out, features_dir, "train.max_episodes=12",
                    "train.batch_size=12", "train.epochs=120", "train.lr=3e-3",
                    "train.kl_anneal_updates=40", "train.free_bits=0.25",
                    "train.word_dropout=0.2", "checkpoint_interval=1000", "seed=0")
    trainer = GoalGeneratorTrainer.from_config(cfg, in_process=True)
    metrics = trainer.train()
    trainer.close()
    return cfg, trainer, metrics


def test_training_fits_keeps_kl_above_zero_and_samples_differ(trained):
    cfg, trainer, metrics = trained
    history = trainer.history
    assert metrics["updates"] == 120 and len(history) == 120
    # the reconstruction is learned: NLL per word falls far from log(V) ~ 5
    assert history[-1]["nll_per_word"] < 0.5 * history[0]["nll_per_word"]
    # free bits hold the posterior off the prior: no collapse to KL = 0
    assert history[-1]["kl_weight"] == 1.0
    batch = trainer.batch(range(12))
    trainer.generator.eval()
    with torch.no_grad():
        kl = float(trainer.losses(batch)["kl"])
    assert kl > 0.5 * cfg.model.latent_size * cfg.train.free_bits, kl
    # five instructions sampled for one trajectory are not all the same
    from agent.models.goal_generator import collate_trajectories

    tid = trainer.load_pairs()[0][0]
    steps, actions, mask = collate_trajectories([trainer._trajectories[tid]])
    samples = trainer.generator.generate(steps, actions, mask, samples=5,
                                         generator=torch.Generator().manual_seed(0))[0]
    assert len({tuple(s) for s in samples}) >= 2, samples
    assert all(len(s) > 3 for s in samples)
    # and they are made of the path's words: most sampled words occur in its references
    words = {w for _, ids in trainer.load_pairs()[:3] for w in ids}
    sampled = [w for s in samples for w in s]
    assert sum(w in words for w in sampled) / len(sampled) > 0.6


def test_checkpoint_resumes_bit_identically(tiny_dataset, features_dir, tmp_path):
    common = ("train.max_episodes=9", "train.batch_size=4", "train.epochs=4",
              "checkpoint_interval=3", "train.kl_anneal_updates=5", "seed=3")
    straight = GoalGeneratorTrainer.from_config(gg_config(
        tiny_dataset, tmp_path / "straight", features_dir, *common, "model.dropout=0.2",
        "total_updates=8"), in_process=True)
    straight.train()
    # a run killed after its checkpoint at update 3 (updates 4-5 lost), resumed to 8
    first = GoalGeneratorTrainer.from_config(gg_config(
        tiny_dataset, tmp_path / "resumed", features_dir, *common, "model.dropout=0.2",
        "total_updates=5"), in_process=True)
    first.train()
    os.remove(first.last_checkpoint)  # the kill: update 5's checkpoint never written
    resumed = GoalGeneratorTrainer.from_config(gg_config(
        tiny_dataset, tmp_path / "resumed", features_dir, *common, "model.dropout=0.2",
        "total_updates=8"), in_process=True)
    resumed.train()
    assert os.path.basename(resumed.resumed_from).startswith("ckpt_u00000003_")
    assert [h["update"] for h in resumed.history] == [4, 5, 6, 7, 8]
    assert [h["loss"] for h in resumed.history] == [h["loss"] for h in straight.history[3:]]
    for (name, a), (_, b) in zip(straight.generator.state_dict().items(),
                                 resumed.generator.state_dict().items()):
        assert torch.equal(a, b), name
    with open(os.path.join(resumed.out_dir, "train_log.jsonl")) as f:
        assert [json.loads(line)["update"] for line in f] == list(range(1, 9))
    # another run's directory is refused, naming the difference
    from agent.run_identity import RunIdentityError

    with pytest.raises(RunIdentityError, match="seed"):
        GoalGeneratorTrainer.from_config(gg_config(
            tiny_dataset, tmp_path / "resumed", features_dir, *common, "model.dropout=0.2",
            "total_updates=9", "seed=4"), in_process=True).train()


def test_train_and_describe_end_to_end(tiny_dataset, features_dir, tmp_path, capsys):
    out = tmp_path / "run"
    overrides = gg_overrides(tiny_dataset, out, features_dir, "train.max_episodes=6",
                             "train.batch_size=6", "train.epochs=3", "eval.splits=[val_seen]",
                             "eval.sample=2", "eval.samples=3")
    assert main(["train", "--config", CONFIG, *overrides]) == 0
    printed = capsys.readouterr().out
    assert "goal_generator: 3 updates" in printed and "val_seen" in printed
    with open(out / "eval" / "generator_val_seen.json") as f:
        figures = json.load(f)
    assert figures["paths"] == 2 and figures["instructions"] == 6
    for key in ("bleu4", "rouge_l", "bleu4_sampled", "distinct_1", "distinct_2"):
        assert 0.0 <= figures[key] <= 1.0, key
    assert figures["nll_per_word"] > 0 and figures["kl"] >= 0
    assert 0.0 < figures["reference_bleu4"] <= 1.0  # the three references agree in part
    assert len(figures["examples"][0]["samples"]) == 3
    # --help-config of a goal generator config lists its own keys
    assert main(["train", "--config", CONFIG, "--help-config"]) == 0
    assert "train.free_bits (float, default 0.1)" in capsys.readouterr().out

    generator, cfg, vocab, _ = load_generator(str(out))
    episode_id = "1"
    png = tmp_path / "describe.png"
    assert main(["describe", "--checkpoint", str(out), "--split", "val_seen", "--episode",
                 episode_id, "--samples", "4", "--out", str(png)]) == 0
    printed = capsys.readouterr().out
    assert "references:" in printed and "4. " in printed
    from PIL import Image

    assert Image.open(png).size[0] > 256
    # an unknown episode and a policy checkpoint are one-line errors
    assert main(["describe", "--checkpoint", str(out), "--split", "val_seen",
                 "--episode", "99999"]) == 2
    assert "no episode '99999'" in capsys.readouterr().err
    bogus = tmp_path / "bogus.pt"
    torch.save({"format": "langnav-checkpoint"}, bogus)
    assert main(["describe", "--checkpoint", str(bogus), "--episode", "1"]) == 2
    assert "not a goal generator checkpoint" in capsys.readouterr().err


def test_an_untrained_generator_scores_near_zero(tiny_dataset, features_dir, tmp_path):
    """Against the path's references an untrained generator (random words) has BLEU-4 ~ 0
    and an NLL near log(V), while the references' own leave-one-out BLEU-4 is far above."""
    cfg = gg_config(tiny_dataset, tmp_path / "e", features_dir, "eval.sample=3",
                    "eval.samples=2")
    trainer = GoalGeneratorTrainer.from_config(cfg, in_process=True)
    figures = evaluate_generator(trainer.generator, cfg, trainer.vocab, "val_seen",
                                 data=trainer.data, in_process=True)
    trainer.close()
    assert figures["paths"] == 3 and figures["instructions"] == 9
    # untrained: words at random, far from the references
    assert figures["bleu4"] < 0.05 and figures["nll_per_word"] > 3.0
    assert figures["reference_bleu4"] > 0.1
