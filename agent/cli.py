"""The ``langnav`` command. Each subcommand parses its arguments here and calls one
function in the package that owns the work (imported lazily so ``langnav --help`` and
the data commands never import torch)."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Callable, List, Optional


TORCH_THREADS_HELP = ("torch threads of a checkpoint's policy (default 1: the environment "
                      "workers need the other cores)")

# ---------------------------------------------------------------------------- argument types
def _count(minimum: int) -> Callable[[str], int]:
    """An argparse type: an integer >= ``minimum`` (a count of episodes, envs, ...)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(
                f"must be a positive integer, got {value}" if minimum == 1 else
                f"must be an integer >= {minimum}, got {value}")
        return value

    parse.__name__ = "count"
    return parse


POSITIVE = _count(1)
NON_NEGATIVE = _count(0)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number, got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must lie in [0, 1], got {text}")
    return value


def _name_list(text: str) -> str:
    """A comma-separated list of names (splits, episode ids) without empty entries; returned
    as given (callers split it)."""
    if any(not entry.strip() for entry in text.split(",")):
        raise argparse.ArgumentTypeError(f"{text!r} has an empty entry (names are separated "
                                         f"by single commas, e.g. val_seen,val_unseen)")
    return text


def _name(text: str) -> str:
    """One split name: non-empty, no comma."""
    if not text.strip() or "," in text:
        raise argparse.ArgumentTypeError(f"must be one split name, got {text!r}")
    return text


def _instructions(text: str) -> str:
    """--instructions: normal, shuffled, or a path to a .json file."""
    if text in ("normal", "shuffled") or text.lower().endswith(".json"):
        return text
    raise argparse.ArgumentTypeError(f"must be normal, shuffled or a FILE.json of episode id "
                                     f"-> instruction text, got {text!r}")


class _HelpFormatter(argparse.HelpFormatter):
    """Every option's help ends with its default, unless the help already says it (or the
    option is required, a flag, or has no default)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if (action.required or any(action.default is v for v in (None, False, argparse.SUPPRESS))
                or "default" in text or not action.option_strings
                and action.nargs not in (argparse.OPTIONAL, argparse.ZERO_OR_MORE)):
            return text
        return f"{text} (default: %(default)s)"


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors: ``langnav eval: error: argument --sample: ...``;
    an unknown option is reported as such (with the closest known one) before any
    missing required argument; options' defaults are shown in ``--help``."""

    def __init__(self, *args, **kwargs) -> None:
        kwargs.setdefault("formatter_class", _HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        if not any(isinstance(a, argparse._SubParsersAction) for a in self._actions):
            self._check_unknown_options(sys.argv[1:] if args is None else list(args))
        return super().parse_known_args(args, namespace)

    def _check_unknown_options(self, args: List[str]) -> None:
        """An argument that looks like an option this (leaf) parser does not know, or
        abbreviates none of its options, is an error naming it."""
        import difflib

        known = [o for action in self._actions for o in action.option_strings]
        for arg in args:
            if arg == "--":
                break
            if not arg.startswith("-") or arg == "-" or self._negative_number_matcher.match(arg):
                continue
            name = arg.split("=", 1)[0]
            if name in known or (self.allow_abbrev and name.startswith("--")
                                 and any(o.startswith(name) for o in known if o.startswith("--"))):
                continue
            close = difflib.get_close_matches(name, known, n=1)
            hint = f" (did you mean {close[0]}?)" if close else ""
            self.error(f"unknown option {name}{hint}")


def _handler(target: str) -> Callable[[argparse.Namespace], int]:
    module_name, func_name = target.split(":")

    def run(args: argparse.Namespace) -> int:
        return getattr(importlib.import_module(module_name), func_name)(args)

    return run


def _add_data(sub: argparse._SubParsersAction) -> None:
    data = sub.add_parser("data", help="build, validate and inspect VLN-CE R2R datasets")
    dsub = data.add_subparsers(dest="data_command", required=True)

    build = dsub.add_parser("build", help="build a houses dataset (scenes + episodes)")
    build.add_argument("--preset", default="tiny", help="dataset preset: tiny or default "
                       "(habitat_configs/houses/<preset>.yaml) or a path to a YAML file")
    build.add_argument("--out", required=True, help="output directory")
    build.add_argument("--seed", type=int, default=0, help="base random seed")
    build.add_argument("--workers", type=POSITIVE, default=None,
                       help="worker processes (default: number of CPU cores)")
    build.add_argument("overrides", nargs="*", help="dotted key=value overrides of the preset")
    build.set_defaults(func=_handler("agent.datasets.builder:cli_build"))

    aug = dsub.add_parser("augment", help="add an 'Aug' training split: more generated paths "
                          "in the train houses (and new train houses); train episodes kept")
    aug.add_argument("--data", required=True, help="a houses dataset directory (data build)")
    aug.add_argument("--name", default="train_aug", help="the new split's name (default: %(default)s)")
    aug.add_argument("--paths-per-house", type=NON_NEGATIVE, default=22,
                     help="new paths in each train house, 3 instructions each (default: %(default)s)")
    aug.add_argument("--new-houses", type=NON_NEGATIVE, default=0,
                     help="new train houses of the standard material set (default: %(default)s)")
    aug.add_argument("--new-house-paths", type=POSITIVE, default=None,
                     help="paths in each new house (default: the preset's train paths per house)")
    aug.add_argument("--seed", type=int, default=0, help="augmentation seed (default: %(default)s)")
    aug.add_argument("--workers", type=POSITIVE, default=None,
                     help="worker processes (default: number of CPU cores)")
    aug.set_defaults(func=_handler("agent.datasets.augment:cli_augment"))

    validate = dsub.add_parser("validate", help="check a VLN-CE R2R episode file or data dir")
    validate.add_argument("path", help="a {split}.json.gz (or .json) file or a data directory")
    validate.add_argument("--gt", default=None, help="ground-truth file (default: found beside)")
    validate.add_argument("--no-scenes", action="store_true",
                          help="skip loading a houses data dir's scenes (start and goal "
                               "navigable, every scene loads)")
    validate.set_defaults(func=_handler("agent.datasets.validate:cli_validate"))

    show = dsub.add_parser("show", help="draw an episode: start RGB, depth, map, instruction")
    show.add_argument("data_dir", help="dataset directory")
    show.add_argument("--split", type=_name, default="val_seen", help="split name")
    show.add_argument("--episode", default=None, help="episode id (default: the first)")
    show.add_argument("--out", required=True, help="output PNG file")
    show.set_defaults(func=_handler("agent.datasets.show:cli_show"))


def _add_eval(sub: argparse._SubParsersAction) -> None:
    ev = sub.add_parser("eval", help="evaluate an agent on a split")
    ev.add_argument("--agent", required=True,
                    help="random, handcrafted, expert, oracle-room, or a checkpoint PATH.pt")
    ev.add_argument("--data", default=None, help="dataset directory (default: the checkpoint's)")
    ev.add_argument("--split", type=_name_list, default="val_seen",
                    help="split name, or several comma-separated")
    ev.add_argument("--out", required=True, help="run directory for stats and predictions")
    ev.add_argument("--num-envs", type=POSITIVE, default=2,
                    help="environments run at once (the agent's batch)")
    ev.add_argument("--workers", type=POSITIVE, default=None,
                    help="environment worker processes holding them (default: one per env "
                         "up to 2 envs, else one per CPU core)")
    ev.add_argument("--max-episodes", type=POSITIVE, default=None,
                    help="evaluate the first K only (default: all)")
    ev.add_argument("--torch-threads", type=POSITIVE, default=1, help=TORCH_THREADS_HELP)
    ev.add_argument("--sample", type=POSITIVE, default=None,
                    help="evaluate K episodes spread evenly over the split (every house), "
                         "the same K for every agent (default: all)")
    ev.add_argument("--seed", type=int, default=0, help="seed of the agents' randomness and of "
                    "the instruction shuffle")
    ev.add_argument("--instructions", type=_instructions, default="normal",
                    help="normal; shuffled: swap instructions among episodes of the same "
                         "house; or FILE.json, a JSON object episode id -> instruction text: "
                         "exactly those episodes with those instructions (tokenised with the "
                         "agent's own tokenizer; words it does not know are counted in the "
                         "stats' run.instruction_encoding)")
    ev.add_argument("--episode-ids", type=_name_list, default=None,
                    help="comma-separated episode ids: evaluate exactly these (one split; "
                         "default: all, or --sample / --max-episodes)")
    ev.add_argument("--backend-config", default=None,
                    help="backend YAML (default: houses; e.g. habitat_configs/habitat/vln_r2r.yaml)")
    ev.add_argument("--name", default=None, help="method name shown in reports (default: the "
                    "checkpoint's run name, or the agent's)")
    ev.add_argument("--stop-gate", type=float, default=None, metavar="P",
                    help="learned agents with a progress monitor: rule STOP out while the "
                         "predicted progress is below P (a decoding rule; default: no gate)")
    ev.set_defaults(func=_handler("eval.evaluator:cli_eval"))

    rep = sub.add_parser("report", help="leaderboard report from run directories")
    rep.add_argument("runs", nargs="+", help="run directories holding stats_{split}.json")
    rep.add_argument("--out", required=True, help="output directory")
    rep.add_argument("--baseline", default=None, help="row name for paired deltas "
                     "(default: none, no ΔSR columns)")
    rep.set_defaults(func=_handler("eval.report:cli_report"))

    ro = sub.add_parser("rollout", help="write rollout videos (mp4) and a contact sheet")
    ro.add_argument("--agent", required=True,
                    help="random, handcrafted, expert, oracle-room, or a checkpoint PATH.pt")
    ro.add_argument("--data", default=None, help="dataset directory (default: the checkpoint's)")
    ro.add_argument("--split", type=_name, default="val_seen", help="split name")
    ro.add_argument("--episodes", type=POSITIVE, default=1,
                    help="number of episodes (the split's first K)")
    ro.add_argument("--episode-ids", type=_name_list, default=None,
                    help="comma-separated episode ids (default: the first --episodes)")
    ro.add_argument("--out", required=True, help="output directory for the videos and the "
                    "contact sheet")
    ro.add_argument("--seed", type=int, default=0, help="seed of the agent's randomness")
    ro.add_argument("--backend-config", default=None,
                    help="backend YAML (default: houses; e.g. habitat_configs/habitat/vln_r2r.yaml)")
    ro.add_argument("--fps", type=POSITIVE, default=8, help="video frames per second")
    ro.add_argument("--torch-threads", type=POSITIVE, default=1, help=TORCH_THREADS_HELP)
    ro.set_defaults(func=_handler("eval.video:cli_rollout"))


def _add_train(sub: argparse._SubParsersAction) -> None:
    tr = sub.add_parser("train", help="train an agent from an experiment config")
    tr.add_argument("--config", required=True, help="habitat_configs/experiments/<name>.yaml")
    tr.add_argument("--help-config", action="store_true", help="list every config key")
    tr.add_argument("--distributed", action="store_true",
                    help="data-parallel training and sharded evaluation on torch.distributed; "
                         "start the ranks with torchrun (a torchrun launch turns it on by "
                         "itself; default: off)")
    tr.add_argument("--backend", choices=("gloo", "nccl"), default=None,
                    help="torch.distributed backend under torchrun (default: nccl with CUDA, "
                         "else gloo)")
    tr.add_argument("overrides", nargs="*", help="dotted key=value overrides")
    tr.set_defaults(func=_handler("agent.algos.train:cli_train"))

    cu = sub.add_parser("curves", help="learning curves of a training run: teacher-forced "
                                       "train vs val_seen NLL (and SR) of every checkpoint")
    cu.add_argument("run_dir", help="the run directory (holds checkpoints/ckpt_*.pt)")
    cu.add_argument("--sample", type=POSITIVE, default=100,
                    help="expert episodes of train and of val_seen, spread over their houses")
    cu.add_argument("--sr-episodes", type=NON_NEGATIVE, default=0,
                    help="also the success rate of rollouts on M episodes of each split (slow)")
    cu.add_argument("--out", default=None, help="output directory (default: RUN_DIR/curves)")
    cu.add_argument("--data", default=None, help="dataset directory (default: the run's)")
    cu.add_argument("--num-envs", type=POSITIVE, default=2, help="recording / rollout workers")
    cu.set_defaults(func=_handler("agent.algos.curves:cli_curves"))

    rm = sub.add_parser("reward-map", help="draw the learned reward over a house map")
    rm.add_argument("--checkpoint", required=True, help="a GAIL/AIRL checkpoint PATH.pt")
    rm.add_argument("--data", default=None, help="dataset directory (default: the checkpoint's)")
    rm.add_argument("--split", type=_name, default="val_seen", help="split name")
    rm.add_argument("--episode", required=True, help="episode id")
    rm.add_argument("--out", required=True, help="output PNG file")
    rm.add_argument("--spacing", type=float, default=0.5,
                    help="metres between the cells whose reward of stopping is drawn")
    rm.set_defaults(func=_handler("agent.algos.reward_map:cli_reward_map"))

    rr = sub.add_parser("reward-rank", help="does the learned reward carry the instruction? "
                                            "own vs misaligned instruction on expert paths")
    rr.add_argument("--checkpoint", required=True, help="a GAIL/AIRL checkpoint (.pt or run dir)")
    rr.add_argument("--data", default=None, help="dataset directory (default: the checkpoint's)")
    rr.add_argument("--split", type=_name, default="val_unseen", help="split name")
    rr.add_argument("--sample", type=NON_NEGATIVE, default=200,
                    help="expert episodes spread over the split's houses (0 = all)")
    rr.add_argument("--max-episodes", type=POSITIVE, default=None,
                    help="only the split's first K episodes (after --sample; default: all)")
    rr.add_argument("--num-envs", type=POSITIVE, default=2, help="recording worker processes")
    rr.add_argument("--torch-threads", type=POSITIVE, default=1, help=TORCH_THREADS_HELP)
    rr.add_argument("--out", default=None, help="also write the result as JSON here "
                    "(default: print only)")
    rr.set_defaults(func=_handler("agent.algos.reward_map:cli_reward_rank"))

    pr = sub.add_parser("probe", help="teacher-forced check that a checkpoint reads the "
                                      "instruction (own vs shuffled, no rollouts)")
    pr.add_argument("--checkpoint", required=True, help="a checkpoint PATH.pt (or run dir)")
    pr.add_argument("--data", default=None, help="dataset directory (default: the checkpoint's)")
    pr.add_argument("--split", type=_name, default="val_unseen", help="split name")
    pr.add_argument("--sample", type=NON_NEGATIVE, default=200,
                    help="expert episodes spread over the split's houses (0 = all)")
    pr.add_argument("--num-envs", type=POSITIVE, default=2, help="recording worker processes")
    pr.add_argument("--seed", type=int, default=0, help="seed of the instruction shuffle")
    pr.add_argument("--out", default=None, help="also write the result as JSON here "
                    "(default: print only)")
    pr.set_defaults(func=_handler("agent.algos.probe:cli_probe"))

    ex = sub.add_parser("export", help="a training checkpoint -> a small self-contained "
                                       "inference checkpoint (no optimiser/trainer state) "
                                       "and its card")
    ex.add_argument("--checkpoint", required=True, help="a training checkpoint PATH.pt")
    ex.add_argument("--out", required=True, help="the exported checkpoint (.pt); its card "
                    "is written beside it as .json")
    ex.add_argument("--weights", choices=("float32", "float16", "int8"), default="int8",
                    help="storage of the policy weights, read back as float32 (int8: 8-bit "
                         "per output row for the large matrices, float16 for the rest)")
    ex.add_argument("--config-file", default=None,
                    help="the training config file, recorded in the card (default: none)")
    ex.add_argument("--command", default=None,
                    help="the training command, recorded in the card (default: none)")
    ex.add_argument("--metrics", nargs="*", default=None, metavar="STATS.json",
                    help="evaluation stats files of the checkpoint, summarised in the card "
                         "(default: none)")
    ex.add_argument("--notes", default="", help="free text recorded in the card (default: "
                    "empty)")
    ex.add_argument("--card", default=None, metavar="FILE.md",
                    help="also write the card as Markdown here (default: none)")
    ex.set_defaults(func=_handler("agent.algos.export:cli_export"))

    pf = sub.add_parser("probe-features", help="which frozen visual feature carries room type, "
                                               "wall colour, free space? linear probes "
                                               "trained on train houses, tested on unseen ones")
    pf.add_argument("--data", required=True, help="dataset directory")
    pf.add_argument("--train-split", type=_name, default="train",
                    help="split whose houses the probes are trained on")
    pf.add_argument("--test-split", type=_name, default="val_unseen",
                    help="split whose houses the probes are tested on")
    pf.add_argument("--frames", type=POSITIVE, default=3000,
                    help="training frames (poses on expert paths spread over the houses)")
    pf.add_argument("--test-frames", type=POSITIVE, default=None, help="test frames (default N/2)")
    pf.add_argument("--candidates", default=None,
                    help="comma-separated candidate features (default: all)")
    pf.add_argument("--random-headings", type=_fraction, default=0.5,
                    help="share of frames with a random heading instead of the expert's")
    pf.add_argument("--seed", type=int, default=0, help="seed of the frame sampling and probes")
    pf.add_argument("--torch-threads", type=POSITIVE, default=1, help=TORCH_THREADS_HELP)
    pf.add_argument("--out", default=None, help="also write the result as JSON here "
                    "(default: print only)")
    pf.set_defaults(func=_handler("agent.algos.feature_probe:cli_probe_features"))


def _add_describe(sub: argparse._SubParsersAction) -> None:
    de = sub.add_parser("describe", help="instructions the goal generator writes for an "
                                         "episode's reference path, printed and drawn on the map")
    de.add_argument("--checkpoint", required=True,
                    help="a goal generator checkpoint G.pt (or its run directory)")
    de.add_argument("--data", default=None, help="dataset directory (default: the checkpoint's)")
    de.add_argument("--split", type=_name, default="val_seen", help="split name")
    de.add_argument("--episode", required=True, help="episode id")
    de.add_argument("--samples", type=POSITIVE, default=5,
                    help="instructions sampled (z from the prior, words sampled)")
    de.add_argument("--temperature", type=float, default=1.0, help="word sampling temperature")
    de.add_argument("--seed", type=int, default=0, help="seed of the samples")
    de.add_argument("--out", default=None, help="also draw them on the episode's map: a PNG "
                    "file (default: print only)")
    de.set_defaults(func=_handler("agent.algos.goal_generator:cli_describe"))


def _add_bench(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="print throughput figures")
    bench.add_argument("what", choices=("render", "encoder", "env", "train", "adversarial"),
                       help="what to measure (adversarial: environment frames/s of PPO on the "
                            "fixed distance reward, GAIL and AIRL under one training config)")
    bench.add_argument("overrides", nargs="*", default=[],
                       help="adversarial and train: key=value config overrides "
                            "(e.g. torch_threads=1)")
    bench.add_argument("--seconds", type=float, default=3.0,
                       help="seconds per measurement (train: per phase and run)")
    bench.add_argument("--data", default=None, help="dataset directory of the env, train and "
                       "adversarial benchmarks (default: data/tiny; adversarial: the config's "
                       "data_dir)")
    bench.add_argument("--config", default="habitat_configs/experiments/airl.yaml",
                       help="adversarial and train: the training config every phase shares "
                            "(default: %(default)s)")
    bench.add_argument("--phases", default=None,
                       help="train only: comma-separated phases of record, bc_update, "
                            "dagger_collect, ppo, gail, airl, or none (default: all)")
    bench.add_argument("--episodes", type=int, default=8,
                       help="train only: episodes recorded / collected per run (default: %(default)s)")
    bench.add_argument("--profile", action="store_true",
                       help="train only: also print cProfile's top functions of each phase")
    bench.add_argument("--iterations", type=int, default=8,
                       help="adversarial and train --ranks: timed PPO iterations per variant "
                            "or rank count (default: %(default)s)")
    bench.add_argument("--ranks", default=None,
                       help="train only: also measure data-parallel PPO (DD-PPO, gloo) on "
                            "these rank counts, e.g. 1,2: frames/s and scaling efficiency "
                            "(default: none; --phases none skips the cost model)")
    bench.set_defaults(func=_handler("agent.bench:cli_bench"))


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="langnav",
        description="Language-conditioned navigation agents (R2R / VLN-CE format).")
    parser.add_argument("-v", "--verbose", action="store_true", help="verbose logging")
    parser.add_argument("--debug", action="store_true",
                        help="on an error, show its Python traceback instead of one line")
    sub = parser.add_subparsers(dest="command", required=True)
    _add_data(sub)
    _add_eval(sub)
    _add_train(sub)
    _add_describe(sub)
    _add_bench(sub)
    return parser


# ---------------------------------------------------------------------------- error lines
#: what a user's input can cause (bad files, configs, arguments, a failing environment):
#: one line ``langnav: error: ...``, exit status 2. Anything else is a bug in langnav:
#: ``langnav: internal error: ...``, exit status 3. ``--debug`` shows the traceback of both.
USER_ERRORS = (ValueError, LookupError, OSError, RuntimeError, ImportError,
               FloatingPointError, EOFError)


def _exception_line(traceback_text: str) -> str:
    """The final ``Type: message`` of a formatted traceback, without the module path of the
    type (``agent.x.FooError: m`` -> ``FooError: m``)."""
    lines = [line for line in traceback_text.strip().splitlines() if line.strip()]
    if not lines:
        return "(no message)"
    # the exception line is the last one not indented (its message may span lines)
    start = max((i for i, line in enumerate(lines) if not line.startswith(" ")), default=0)
    last = " ".join(line.strip() for line in lines[start:])
    kind, sep, message = last.partition(": ")
    if sep and " " not in kind:
        last = f"{kind.rsplit('.', 1)[-1]}: {message}"
    return last


def error_line(exc: BaseException) -> str:
    """One line describing ``exc`` for the user: an environment worker's failure as the
    failing env and its exception's own message (which names the episode and the file), an
    OS error as its reason and file, anything else as its message with newlines folded."""
    from agent.envs.vector_env import EnvWorkerError

    if isinstance(exc, EnvWorkerError):
        if exc.env_errors:
            text = "; ".join(sorted({f"environment {i}: {_exception_line(tb)}"
                                     for i, tb in sorted(exc.env_errors.items())}))
        else:
            head, _, rest = str(exc).partition("\n")
            text = head.rstrip(":") + (f": {_exception_line(rest)}" if rest.strip() else "")
    elif isinstance(exc, KeyError) and exc.args:
        text = str(exc.args[0])
    elif isinstance(exc, OSError) and exc.strerror and exc.filename is not None:
        text = f"{exc.strerror}: {exc.filename}"
        if exc.filename2 is not None:
            text += f" -> {exc.filename2}"
    else:
        text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(levelname)s %(name)s: %(message)s")
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("langnav: interrupted", file=sys.stderr)
        return 130
    except USER_ERRORS as e:
        if args.debug:
            raise
        print(f"langnav: error: {error_line(e)}", file=sys.stderr)
        return 2
    except Exception as e:  # a bug: still one line; the traceback with --debug
        if args.debug:
            raise
        print(f"langnav: internal error: {type(e).__name__}: {error_line(e)} (a bug in "
              f"langnav; --debug shows the traceback)", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
