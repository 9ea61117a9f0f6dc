#!/usr/bin/env bash
# The quickstart on the embedded houses world: sets up langnav, builds the tiny dataset,
# evaluates the shipped pretrained agent (models/vln_agent.pt, trained on the default
# preset; the tiny preset's houses are the default's first ones, so its tiny val_seen
# episodes are among the agent's training episodes and only val_unseen is held out)
# beside the control agents on val_seen and
# val_unseen, trains a BC warm start and a language-conditioned AIRL agent briefly (a smoke
# run, not a result: it shows that training runs), evaluates both, writes the leaderboard
# report and rollout videos of the pretrained agent, and says where everything is.
set -euo pipefail
cd "$(dirname "$0")/.."
bash tools/setup.sh
OUT=${LANGNAV_OUT:-runs/quickstart}
DATA=${LANGNAV_DATA:-data/tiny}
mkdir -p "$OUT"

[ -f "$DATA/build.json" ] || langnav data build --preset tiny --out "$DATA" --seed 0
langnav data show "$DATA" --split val_seen --out "$OUT/episode.png"
for agent in random handcrafted oracle-room expert; do
  langnav eval --agent "$agent" --data "$DATA" --split val_seen,val_unseen \
      --out "$OUT/eval/$agent" --num-envs 2
done
# The pretrained agent shipped in the repository (models/README.md: its config, training
# command and default-preset metrics); it re-encodes the tiny build's instructions itself.
AGENT=models/vln_agent.pt
PRETRAINED="pretrained (models/vln_agent.pt)"
langnav eval --agent "$AGENT" --data "$DATA" --split val_seen,val_unseen \
    --out "$OUT/eval/pretrained" --num-envs 2 --name "$PRETRAINED"
# A short BC warm start, then language-conditioned AIRL from it: a smoke run (minutes; it
# shows that training runs, its rows are not results). Each is evaluated on both splits.
SMOKE="(smoke run, not a result)"
langnav train --config habitat_configs/experiments/smoke_bc.yaml \
    data_dir="$DATA" out_dir="$OUT/train/bc" name="BC $SMOKE" eval.max_episodes=null
langnav train --config habitat_configs/experiments/smoke_airl.yaml \
    data_dir="$DATA" out_dir="$OUT/train/airl" name="AIRL $SMOKE" rl.init_from="$OUT/train/bc" \
    eval.max_episodes=null
langnav report "$OUT"/eval/* "$OUT/train/bc/eval" "$OUT/train/airl/eval" \
    --out "$OUT/report" --baseline random
# Rollout videos of the pretrained agent on val_unseen: the first two episodes it
# succeeded on and the first two it failed (from its evaluation above).
EPISODE_IDS=$(python3 - "$OUT/eval/pretrained/stats_val_unseen.json" <<'PYEOF'
import json, sys
episodes = json.load(open(sys.argv[1]))["episodes"]
won = [e for e, ep in episodes.items() if ep["metrics"]["sr"] > 0][:2]
lost = [e for e, ep in episodes.items() if ep["metrics"]["sr"] == 0][:2]
print(",".join(won + lost))
PYEOF
)
langnav rollout --agent "$AGENT" --data "$DATA" --split val_unseen --episode-ids "$EPISODE_IDS" \
    --out "$OUT/videos"

cat <<EOF

langnav quickstart done.
  dataset:        $DATA   (fairness report: $DATA/fairness.json)
  episode picture: $OUT/episode.png
  evaluations:    $OUT/eval/<agent>/stats_{val_seen,val_unseen}.json, predictions_*.json
  report:         $OUT/report/report.html  (and report.md, report.json, plots, learning curves)
  pretrained agent: $AGENT  (card: models/README.md), evaluated in $OUT/eval/pretrained/
  training runs:  $OUT/train/{bc,airl}/ (smoke run, not a result: checkpoints, TensorBoard logs, eval/)
  rollout videos: $OUT/videos/  (the pretrained agent on val_unseen, episodes $EPISODE_IDS:
                  up to two it succeeded on, then two it failed; contact_sheet_val_unseen.png)
EOF
