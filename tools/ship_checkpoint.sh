#!/usr/bin/env bash
# Ships a pretrained agent: exports a training checkpoint to models/vln_agent.pt (int8
# weights, read back as float32; no optimiser/trainer state, frozen package weights left
# out, a frozen depth CNN of another run included), writes its card models/vln_agent.json
# and models/README.md (config, command, metrics, source run). Replace the shipped agent by
# running this with a better checkpoint; the quickstart and the slow test use the file.
#
#   bash tools/ship_checkpoint.sh CHECKPOINT.pt CONFIG.yaml [EVAL_RUN_DIR ...]
#
# CHECKPOINT.pt  a training checkpoint (RUN/checkpoints/ckpt_*.pt)
# CONFIG.yaml    the experiment config it was trained with (recorded in the card)
# EVAL_RUN_DIR   `langnav eval` run directories of that checkpoint or of the shipped file:
#                their stats_*.json go into the card's metrics table (default: none)
# TRAIN_COMMAND  (environment) the training command (default: langnav train --config CONFIG)
set -euo pipefail
if [ $# -lt 2 ]; then
  sed -n '2,14p' "$0" >&2
  exit 2
fi
CKPT=$1
CONFIG=$2
shift 2
COMMAND=${TRAIN_COMMAND:-langnav train --config $CONFIG}
cd "$(dirname "$0")/.."
METRICS=()
for dir in "$@"; do
  found=0
  for f in "$dir"/stats_*.json; do
    [ -f "$f" ] && { METRICS+=("$f"); found=1; }
  done
  [ $found -eq 1 ] || { echo "ship_checkpoint: no stats_*.json in $dir" >&2; exit 2; }
done
python3 -m agent.cli export --checkpoint "$CKPT" --out models/vln_agent.pt --weights int8 \
    --config-file "$CONFIG" --command "$COMMAND" --card models/README.md \
    --notes "the pretrained agent of tools/quickstart.sh (regenerate with tools/ship_checkpoint.sh)" \
    ${METRICS[@]+--metrics "${METRICS[@]}"}
