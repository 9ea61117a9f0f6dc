#!/usr/bin/env bash
# The quickstart (smoke run) on the embedded houses world: sets up langnav, builds the tiny
# dataset, evaluates the control agents on val_seen and val_unseen, writes the leaderboard
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
langnav report "$OUT"/eval/* --out "$OUT/report" --baseline random
langnav rollout --agent expert --data "$DATA" --split val_unseen --episodes 1 --out "$OUT/videos"

cat <<EOF

langnav quickstart done.
  dataset:        $DATA   (fairness report: $DATA/fairness.json)
  episode picture: $OUT/episode.png
  evaluations:    $OUT/eval/<agent>/stats_{val_seen,val_unseen}.json, predictions_*.json
  report:         $OUT/report/report.md  (and report.html, report.json, plots)
  rollout video:  $OUT/videos/
EOF
