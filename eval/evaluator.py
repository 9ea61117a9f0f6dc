"""Runs an agent over a split in N environment worker processes and writes
``stats_{split}.json`` (per-episode metrics and trajectories, aggregates) and
``predictions_{split}.json`` (VLN-CE leaderboard format).

Resumable: every finished episode is appended (and fsynced) to
``RUN_DIR/partial_{split}.jsonl``; a re-run after a kill skips those episodes, and since
agents seed their randomness per episode, yields the same stats as one uninterrupted run.
"""
from __future__ import annotations

import json
import logging
import os
import time
from collections import defaultdict
from typing import Any, Dict, List, Optional, Sequence

import numpy as np

# backend configs are read where environments are built; re-exported for eval's callers
from agent.envs.factory import houses_backend_config, load_backend_config  # noqa: F401

log = logging.getLogger("langnav.eval")


# ---------------------------------------------------------------------------- controls
def shuffle_instructions(episodes: Sequence[Dict[str, Any]], seed: int = 0) -> List[Dict[str, Any]]:
    """Swap instructions among episodes of the same house (the language control): the
    paths of a house are put in a random cycle and each episode takes an instruction of
    the next path, so no episode keeps an instruction of its own path (a house with a
    single path keeps its instructions)."""
    from agent.datasets.episodes import house_of

    rng = np.random.default_rng(seed)
    paths: Dict[str, Dict[Any, List[int]]] = defaultdict(lambda: defaultdict(list))
    for i, ep in enumerate(episodes):
        paths[house_of(ep)][ep["trajectory_id"]].append(i)
    out = [dict(ep) for ep in episodes]
    for house in sorted(paths):
        by_path = paths[house]
        order = sorted(by_path, key=str)
        order = [order[k] for k in rng.permutation(len(order))]
        for k, traj in enumerate(order):
            donors = by_path[order[(k + 1) % len(order)]]
            for j, i in enumerate(by_path[traj]):
                out[i]["instruction"] = episodes[donors[j % len(donors)]]["instruction"]
    return out


def load_instruction_file(path: str) -> Dict[str, str]:
    """``--instructions FILE.json``: a JSON object episode id -> instruction text (ids as
    strings); one error naming the file and the entry for anything else."""
    if not os.path.isfile(path):
        raise FileNotFoundError(f"instruction file not found: {path}")
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except ValueError as e:
        raise ValueError(f"{path}: not valid JSON ({e})") from None
    if not isinstance(data, dict) or not data:
        raise ValueError(f"{path}: must be a non-empty JSON object of episode id -> "
                         f"instruction text, got {type(data).__name__}"
                         + (" (empty)" if isinstance(data, dict) else ""))
    texts: Dict[str, str] = {}
    for key, text in data.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"{path}: episode {key!r}: the instruction must be a non-empty "
                             f"string, got {text!r}")
        texts[str(key)] = text
    return texts


def with_instructions(episodes: Sequence[Dict[str, Any]], texts: Dict[str, str], vocab: Any,
                      where: str) -> List[Dict[str, Any]]:
    """Exactly the episodes ``texts`` names (split order), each with its text as the
    instruction; ``instruction_tokens`` are the text in the dataset's vocabulary (unknown
    words -> ``<unk>``), so an agent that reads the dataset's tokens reads the same ids as
    its own tokenizer would make of the text."""
    from agent.datasets.show import select_episodes

    out = []
    for ep in select_episodes(episodes, list(texts), where):
        text = texts[str(ep["episode_id"])]
        out.append(dict(ep, instruction={"instruction_text": text,
                                         "instruction_tokens": vocab.encode(text, max_len=None)}))
    return out


# ---------------------------------------------------------------------------- resume log
class PartialLog:
    """Append-only JSON lines of finished episodes. A line a kill cut short (torn write) is
    repaired on :meth:`load`: the fragment is dropped from the file (that episode runs
    again), so the next append starts on a line of its own."""

    def __init__(self, path: str):
        self.path = path

    def load(self) -> Dict[str, Dict[str, Any]]:
        done: Dict[str, Dict[str, Any]] = {}
        from agent.io_utils import read_jsonl_repaired

        for rec in read_jsonl_repaired(self.path, what="partial evaluation log"):
            if isinstance(rec, dict) and "episode_id" in rec:
                done[str(rec["episode_id"])] = rec
        return done

    def append(self, record: Dict[str, Any]) -> None:
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
            f.flush()
            os.fsync(f.fileno())


# ---------------------------------------------------------------------------- the loop
def _new_record(episode: Dict[str, Any], gt: Dict[str, Any], d0: Optional[float],
                position, heading) -> Dict[str, Any]:
    """A fresh per-episode record; ``d0`` is None when the split withholds the goal."""
    from agent.datasets.episodes import house_of

    entry = gt.get(str(episode["episode_id"]))
    return {"episode_id": str(episode["episode_id"]), "house": house_of(episode),
            "trajectory_id": episode.get("trajectory_id"),
            "geodesic_start": None if d0 is None else float(d0),
            "positions": [list(map(float, position))], "headings": [float(heading)],
            "actions": [], "distances_to_goal": None if d0 is None else [float(d0)],
            "stop_called": False, "gt_locations": entry["locations"] if entry else None}


def _finish(record: Dict[str, Any]) -> Dict[str, Any]:
    from eval.metrics import episode_metrics

    record["metrics"] = episode_metrics(record)
    return record


def run_episodes(agent, envs, episodes: Sequence[Dict[str, Any]], gt: Dict[str, Any],
                 on_finished, progress=None, on_step=None) -> None:
    """Run ``episodes`` on the vector env, calling ``on_finished(record)`` for each, and
    ``on_step(slot, record, observations, action)`` after each reset (action None) and step.

    An agent with ``act_rows`` (eval/agents.py) is asked for the running slots only: once
    the queue is empty, the policy no longer runs on the slots whose episodes have ended.
    An agent with ``act`` alone gets every slot (an ended slot repeats a running one's
    observation) and its actions for ended slots are ignored."""
    queue = list(episodes)
    n = envs.num_envs
    slots: List[Optional[Dict[str, Any]]] = [None] * n
    obs: List[Optional[Dict[str, Any]]] = [None] * n
    masks = [0.0] * n
    hidden = None

    def start(free: List[int]) -> None:
        """Start the next queued episodes in the ``free`` slots, in slot order, with one
        batched call per kind (reset, start distance, start pose) for all of them."""
        starting = []
        for slot in free:
            slots[slot] = None
            if queue:
                starting.append((slot, queue.pop(0)))
        if not starting:
            return
        indices = [slot for slot, _ in starting]
        observations = envs.reset([ep for _, ep in starting], indices=indices)
        goals = {slot: (ep.get("goals") or [{}])[0].get("position") for slot, ep in starting}
        with_goal = [(slot, ep) for slot, ep in starting if goals[slot]]
        distances = envs.call("geodesic_distance",
                              [(ep["start_position"], goals[slot]) for slot, ep in with_goal],
                              indices=[slot for slot, _ in with_goal]) if with_goal else []
        d0 = dict(zip([slot for slot, _ in with_goal], distances))
        states = envs.call("agent_state", indices=indices)
        for (slot, ep), o, (position, heading) in zip(starting, observations, states):
            obs[slot] = o
            slots[slot] = _new_record(ep, gt, d0.get(slot), position, heading)
            masks[slot] = 0.0
            if hasattr(agent, "start_episode"):
                agent.start_episode(slot, ep)
            if on_step is not None:
                on_step(slot, slots[slot], obs[slot], None)

    start(list(range(n)))
    while any(r is not None for r in slots):
        active = [i for i in range(n) if slots[i] is not None]
        if hasattr(agent, "act_rows"):
            chosen, hidden = agent.act_rows(active, [obs[i] for i in active], hidden,
                                            [masks[i] for i in active], deterministic=True)
            actions: Dict[int, int] = dict(zip(active, chosen))
        else:
            batch_obs = [obs[i] if obs[i] is not None else obs[active[0]] for i in range(n)]
            every, hidden = agent.act(batch_obs, hidden, list(masks), deterministic=True)
            actions = dict(enumerate(every))
        results = envs.step([actions[i] for i in active], indices=active)
        ended = []
        for i, (o, done, info) in zip(active, results):
            rec = slots[i]
            rec["actions"].append(int(actions[i]))
            rec["positions"].append([float(v) for v in info["position"]])
            rec["headings"].append(float(info["heading"]))
            if rec["distances_to_goal"] is not None:
                rec["distances_to_goal"].append(float(info["distance_to_goal"]))
            obs[i], masks[i] = o, 1.0
            if done:
                rec["stop_called"] = bool(info["is_stop_called"])
            if on_step is not None:
                on_step(i, rec, o, int(actions[i]))
            if done:
                on_finished(_finish(rec))
                if progress is not None:
                    progress.update(1)
                ended.append(i)
        start(ended)  # the same slots take the same next episodes as one by one


def evenly_spaced(episodes: Sequence[Dict[str, Any]], count: int) -> List[Dict[str, Any]]:
    """``count`` episodes spread evenly over the split's order (episode i * n / count), so a
    subset covers every house instead of the first few; all of them if count >= n."""
    if count < 1:
        raise ValueError(f"--sample must be at least 1, got {count}")
    n = len(episodes)
    if count >= n:
        return list(episodes)
    return [episodes[(i * n) // count] for i in range(count)]


# ---------------------------------------------------------------------------- one split
def agent_identity(agent) -> Dict[str, Any]:
    """What acts: the agent's class, and for a learned agent the sha1 of its weights
    (whichever checkpoint file they came from)."""
    from agent.run_identity import module_weights_sha1

    identity: Dict[str, Any] = {"kind": type(agent).__name__}
    policy = getattr(agent, "policy", None)
    if policy is not None and hasattr(policy, "state_dict"):
        identity["weights_sha1"] = module_weights_sha1(policy)
    if getattr(agent, "stop_gate", None) is not None:
        identity["stop_gate"] = agent.stop_gate
    return identity


def check_eval_identity(agent, data_dir: str, split: str, out_dir: str, *,
                        backend_cfg: Dict[str, Any], instructions: Any, seed: int,
                        sample: Optional[int], max_episodes: Optional[int],
                        agent_name: str = "",
                        episode_ids: Optional[Sequence[str]] = None) -> None:
    """Record what produces ``out_dir``'s episodes of ``split`` (``identity_{split}.json``:
    agent, dataset split, instruction mode, sample, first-K, seed, render settings), or
    raise RunIdentityError naming every difference when the directory holds episodes of
    another agent, dataset or mode. ``instructions``: the mode, or for an instruction file
    ``{"file_sha1": ...}`` (its content, wherever it lies). A directory from before
    identities were recorded is adopted."""
    from agent.run_identity import check_identity, dataset_identity

    render = {k: v for k, v in backend_cfg.items() if k not in ("data_dir", "scenes_dir")}
    render["privileged"] = bool(getattr(agent, "privileged", False))
    identity = {"agent": agent_identity(agent), "data": dataset_identity(data_dir, split),
                "instructions": instructions, "seed": int(seed), "sample": sample,
                "max_episodes": max_episodes, "backend": render}
    if episode_ids is not None:  # recorded only when chosen: older directories still match
        identity["episode_ids"] = [str(i) for i in episode_ids]
    info = {"agent_name": agent_name, "data_dir": os.path.abspath(data_dir),
            "checkpoint": (getattr(agent, "run_meta", None) or {}).get("checkpoint")}
    check_identity(os.path.join(out_dir, f"identity_{split}.json"), identity,
                   f"run directory {out_dir} (split {split})", info=info,
                   remedy="evaluate into another --out, or remove its files of this split")


def evaluate_split(agent, agent_name: str, data_dir: str, split: str, out_dir: str, *,
                   backend_cfg: Dict[str, Any], num_envs: int = 2,
                   max_episodes: Optional[int] = None, sample: Optional[int] = None,
                   instructions: str = "normal",
                   seed: int = 0, run_meta: Optional[Dict[str, Any]] = None,
                   in_process: bool = False, num_workers: Optional[int] = None,
                   episode_ids: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Evaluate on one split; returns the stats dict (also written to ``out_dir``).

    ``num_envs`` environments run in ``num_workers`` processes (None: one per env up to 2
    envs, else one per CPU core; :class:`~agent.envs.vector_env.VectorEnv`); each episode's
    environment behaves the same whichever slot or worker runs it.

    ``max_episodes``: the first K episodes; ``sample``: K episodes spread evenly over the
    split (:func:`evenly_spaced`; the same ones for every agent and instruction mode, so
    runs stay paired); ``episode_ids``: exactly these episodes.

    ``instructions``: ``normal``, ``shuffled`` (:func:`shuffle_instructions`) or the path of
    a JSON file episode id -> text (:func:`load_instruction_file`): exactly the episodes it
    names, with its texts (:func:`with_instructions`); the agent's report of unknown words
    (``run.instruction_encoding``) is then made from the texts.

    Under torchrun (agent/distributed.py) the episodes are split by rank: each rank
    runs ``todo[rank::world]`` in its own environments and appends to its own partial log
    (``partial_{split}.rank{r}.jsonl``); rank 0 merges every rank's records into the stats
    and predictions (the same, episode by episode, as one process: each episode's
    environment and the agent's per-episode seed do not depend on who runs it) and every
    rank returns them."""
    from tqdm import tqdm

    from agent.datasets.episodes import load_gt, load_split, split_paths
    from agent.distributed import current
    from agent.envs.vector_env import VectorEnv
    from eval.schema import aggregate, predictions_from_stats, save_predictions, save_stats

    ep_path, gt_path = split_paths(data_dir, split)
    episodes, vocab = load_split(ep_path)
    if hasattr(agent, "check_vocab"):  # another vocabulary: texts re-encoded with the agent's
        agent.check_vocab(vocab, ep_path)
    gt = load_gt(gt_path) if os.path.exists(gt_path) else {}
    instruction_file = None
    identity_instructions: Any = instructions
    if instructions == "shuffled":
        episodes = shuffle_instructions(episodes, seed)
    elif instructions != "normal":
        from agent.run_identity import file_sha1

        episodes = with_instructions(episodes, load_instruction_file(instructions), vocab,
                                     where=f"{ep_path} (named in {instructions})")
        instruction_file = {"path": os.path.abspath(instructions),
                            "sha1": file_sha1(instructions), "episodes": len(episodes)}
        identity_instructions = {"file_sha1": instruction_file["sha1"]}
    if episode_ids is not None:
        from agent.datasets.show import select_episodes

        episodes = select_episodes(episodes, list(episode_ids), ep_path if instruction_file
                                   is None else f"{instructions}")
    if max_episodes is not None and sample is not None:
        raise ValueError("choose max_episodes (the first K) or sample (K spread over the "
                         "split), not both")
    if sample is not None:
        episodes = evenly_spaced(episodes, sample)
    if max_episodes is not None:
        episodes = episodes[:max_episodes]
    # how the agent reads these instructions: unknown words, re-encoding, cut/windowed texts
    # (a user's texts: counted from the words, not from the dataset's <unk> tokens)
    reported = episodes if instruction_file is None else [
        {"instruction": {"instruction_text": ep["instruction"]["instruction_text"]}}
        for ep in episodes]
    encoding = agent.instruction_report(reported) if hasattr(agent, "instruction_report") else None
    dist = current()
    os.makedirs(out_dir, exist_ok=True)
    dist.main_first(lambda: check_eval_identity(
        agent, data_dir, split, out_dir, backend_cfg=backend_cfg,
        instructions=identity_instructions, seed=seed, sample=sample,
        max_episodes=max_episodes, agent_name=agent_name, episode_ids=episode_ids))
    partials = partial_logs(out_dir, split, dist.world_size)
    partial = partials[dist.rank]
    done = load_partials(partials)
    todo = dist.shard([ep for ep in episodes if str(ep["episode_id"]) not in done])
    t0 = time.time()
    if todo:
        log.info("%s on %s: %d episodes to run, %d already done", agent_name, split,
                 len(todo), len(done))
        cfg = dict(backend_cfg, privileged=bool(getattr(agent, "privileged", False)))
        with VectorEnv(cfg, min(num_envs, len(todo)), num_workers=num_workers,
                       in_process=in_process) as envs:
            if hasattr(agent, "bind_envs"):
                agent.bind_envs(envs)
            with tqdm(total=len(episodes), initial=len(done), desc=f"{agent_name} {split}",
                      unit="ep") as bar:
                mark = t0

                def finished(rec: Dict[str, Any]) -> None:
                    nonlocal mark
                    now = time.time()  # wall time since the previous finished episode
                    rec["wall_s"], mark = now - mark, now
                    partial.append(rec)
                    done[rec["episode_id"]] = rec
                run_episodes(agent, envs, todo, gt, finished, bar)
    if dist.distributed:  # every rank's episodes are logged: rank 0 merges and writes
        dist.barrier()
        if not dist.is_main:
            return dist.broadcast_object(None)
        done = load_partials(partials)
    order = [str(ep["episode_id"]) for ep in episodes]
    per_episode = {eid: {"house": done[eid]["house"], "trajectory_id": done[eid]["trajectory_id"],
                         "geodesic_start": done[eid]["geodesic_start"],
                         "metrics": done[eid]["metrics"],
                         "trajectory": {k: done[eid][k] for k in ("positions", "headings", "actions")},
                         "stop_called": done[eid]["stop_called"]}
                   for eid in order}
    run = {"method": agent_name, "seed": seed,
           "instructions": instructions if instruction_file is None else "file",
           "training_frames": None, "wall_time_s": None, "backend": backend_cfg.get("backend", "houses"),
           "data_dir": os.path.abspath(data_dir), "checkpoint": None, "notes": "",
           # wall seconds of these episodes summed over every (killed and resumed) session
           "eval_seconds": round(sum(done[eid].get("wall_s", 0.0) for eid in order), 1)}
    run.update(run_meta or {})
    if encoding:
        run["instruction_encoding"] = encoding
    if instruction_file is not None:
        run["instruction_file"] = instruction_file
    if episode_ids is not None:
        run["episode_ids"] = [str(i) for i in episode_ids]
    stats = {"schema": "langnav.stats/1", "split": split, "agent": agent_name, "run": run,
             "episodes": per_episode, "aggregate": aggregate(per_episode)}
    save_stats(os.path.join(out_dir, f"stats_{split}.json"), stats)
    save_predictions(os.path.join(out_dir, f"predictions_{split}.json"),
                     predictions_from_stats(stats))
    return dist.broadcast_object(stats)


def partial_logs(out_dir: str, split: str, world_size: int = 1) -> List[PartialLog]:
    """The partial logs of ``split`` in ``out_dir``: ``partial_{split}.jsonl`` (one process,
    rank 0) and ``partial_{split}.rank{r}.jsonl`` of ranks r >= 1 of a sharded evaluation —
    every one present (a run resumed with fewer ranks still counts their episodes)."""
    logs = [PartialLog(os.path.join(out_dir, f"partial_{split}.jsonl"))]
    logs += [PartialLog(os.path.join(out_dir, f"partial_{split}.rank{r}.jsonl"))
             for r in range(1, world_size)]
    known = {log_.path for log_ in logs}
    prefix = f"partial_{split}.rank"
    if os.path.isdir(out_dir):
        for name in sorted(os.listdir(out_dir)):
            path = os.path.join(out_dir, name)
            if name.startswith(prefix) and name.endswith(".jsonl") and path not in known:
                logs.append(PartialLog(path))
    return logs


def load_partials(logs: Sequence[PartialLog]) -> Dict[str, Dict[str, Any]]:
    """Finished episodes of every log, by episode id."""
    done: Dict[str, Dict[str, Any]] = {}
    for log_ in logs:
        done.update(log_.load())
    return done


def resolve_data_dir(data_arg: Optional[str], backend_cfg_path: Optional[str], agent=None) -> str:
    """--data, else the backend config's data_dir, else the checkpoint's dataset."""
    if data_arg:
        return data_arg
    if backend_cfg_path:
        cfg = load_backend_config(backend_cfg_path, None)
        if cfg.get("data_dir"):
            return cfg["data_dir"]
    ckpt_data = getattr(agent, "data_dir", None)
    if ckpt_data:
        return ckpt_data
    raise ValueError("--data DIR is required for this agent")


def format_aggregate(stats: Dict[str, Any]) -> str:
    agg = stats["aggregate"]
    keys = ("tl", "ne", "osr", "sr", "spl", "ndtw", "sdtw")
    vals = "  ".join(f"{k.upper()} {agg[k]:.3f}" for k in keys if agg.get(k) is not None)
    return f"{stats['agent']:<14} {stats['split']:<11} n={agg.get('num_episodes')}  {vals}"


def cli_eval(args) -> int:
    from eval.agents import limit_torch_threads, make_agent

    splits = args.split.split(",")
    chosen = [o for o, on in (("--episode-ids", getattr(args, "episode_ids", None)),
                              ("--instructions FILE", args.instructions not in ("normal", "shuffled")))
              if on]
    if chosen and len(splits) > 1:
        raise ValueError(f"{' and '.join(chosen)} name episodes of one split; got --split "
                         f"{args.split}")
    is_checkpoint = args.agent.endswith(".pt")
    limit_torch_threads(args.agent, args.torch_threads)
    data_dir = args.data if is_checkpoint else resolve_data_dir(args.data, args.backend_config)
    if data_dir:  # the split asked for is named before anything (the agent) reads other files
        from agent.datasets.episodes import require_split

        for split in args.split.split(","):
            require_split(data_dir, split)
    agent = make_agent(args.agent, args.num_envs, data_dir, seed=args.seed,
                       stop_gate=getattr(args, "stop_gate", None))
    data_dir = resolve_data_dir(data_dir, args.backend_config, agent)
    backend_cfg = load_backend_config(args.backend_config, data_dir)
    # a learned agent sees observations at the resolution it was trained with
    backend_cfg.update(getattr(agent, "backend_overrides", {}) or {})
    name = args.name or getattr(agent, "name", None) or os.path.basename(args.agent)
    meta = dict(getattr(agent, "run_meta", {}) or {})
    if args.name:  # the checkpoint's run name otherwise (its run_meta)
        meta["method"] = args.name
    episode_ids = args.episode_ids.split(",") if getattr(args, "episode_ids", None) else None
    for split in args.split.split(","):
        stats = evaluate_split(agent, name, data_dir, split, args.out, backend_cfg=backend_cfg,
                               num_envs=args.num_envs, num_workers=getattr(args, "workers", None),
                               max_episodes=args.max_episodes,
                               sample=args.sample, episode_ids=episode_ids,
                               instructions=args.instructions, seed=args.seed, run_meta=meta)
        print(format_aggregate(stats))
        encoding = stats["run"].get("instruction_encoding") or {}
        if args.instructions not in ("normal", "shuffled") and encoding:
            words = encoding.get("unknown_words") or {}
            print(f"  {encoding.get('with_unknown_words', 0)} of {encoding.get('instructions', 0)} "
                  f"instructions hold words the agent does not know"
                  + (f": {', '.join(sorted(words))}" if words else ""))
    print(f"wrote {args.out}")
    return 0
