#!/usr/bin/env bash
# The quickstart (smoke run) on the embedded houses world: sets up langnav, builds the tiny
# dataset, evaluates the control agents on val_seen and val_unseen, trains a BC warm start
# and a language-conditioned AIRL agent briefly, evaluates both, writes the leaderboard
# report and one rollout video, and says where everything is.
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
# A short BC warm start, then language-conditioned AIRL from it (a smoke run: minutes, not
# a result; the README shows the default-preset table). Each run is evaluated on both splits.
langnav train --config habitat_configs/experiments/smoke_bc.yaml \
    data_dir="$DATA" out_dir="$OUT/train/bc" name=BC eval.max_episodes=null
langnav train --config habitat_configs/experiments/smoke_airl.yaml \
    data_dir="$DATA" out_dir="$OUT/train/airl" name=AIRL rl.init_from="$OUT/train/bc" \
    eval.max_episodes=null
langnav report "$OUT"/eval/* "$OUT/train/bc/eval" "$OUT/train/airl/eval" \
    --out "$OUT/report" --baseline random
AIRL_CKPT=$(ls "$OUT"/train/airl/checkpoints/ckpt_*.pt | tail -1)
langnav rollout --agent "$AIRL_CKPT" --split val_unseen --episodes 1 --out "$OUT/videos"

cat <<EOF

langnav quickstart done.
  dataset:        $DATA   (fairness report: $DATA/fairness.json)
  episode picture: $OUT/episode.png
  evaluations:    $OUT/eval/<agent>/stats_{val_seen,val_unseen}.json, predictions_*.json
  report:         $OUT/report/report.html  (and report.md, report.json, plots, learning curves)
  training runs:  $OUT/train/{bc,airl}/ (checkpoints, TensorBoard logs, eval/)
  rollout video:  $OUT/videos/  (the AIRL agent on val_unseen; contact_sheet_val_unseen.png)
EOF
