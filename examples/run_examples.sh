#!/usr/bin/env bash
# A tour of the `seesr` command on small images this project makes itself (nothing is downloaded
# except the model weights, once). Run from anywhere:
#
#     bash examples/run_examples.sh              # full default settings (a GPU is advised)
#     SEESR_EXAMPLE_ARGS="--steps 20 --sampler unipc" bash examples/run_examples.sh
#
# Offline with hand-downloaded weights: export SEESR_WEIGHTS=/path/to/folder (official layout).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
work="${SEESR_EXAMPLE_DIR:-$here/run}"
extra=(${SEESR_EXAMPLE_ARGS:-})
seesr() { python -m seesr_cli "$@"; }   # the same as the `seesr` console script

echo "== 1. make the low-resolution examples ($work/lr)"
python "$here/make_examples.py" "$work/lr"

echo "== 2. where the weights are, and what a run would use"
seesr weights || { echo "-- fetching the weights (about 14 GB, once)"; seesr download; }

echo "== 3. what DAPE sees in each image (tags, and per tile for the largest)"
seesr tag "$work/lr"
seesr tag "$work/lr/shapes_rgb_160x120.png" --per-tile --json | head -n 40

echo "== 4. the plan, without loading any model"
seesr upscale "$work/lr" -o "$work/x4" --dry-run

echo "== 5. upscale the folder (PNG; alpha, grayscale, 16-bit and EXIF rotation kept)"
seesr upscale "$work/lr" -o "$work/x4" "${extra[@]}"

echo "== 6. run it again: every finished file is skipped (this is also how a stopped run resumes)"
seesr upscale "$work/lr" -o "$work/x4" "${extra[@]}"

echo "== 7. one file to an exact name, as JPEG, with a JSON report"
seesr upscale "$work/lr/text_rgb_128x96.jpg" -o "$work/text_x2.jpg" --scale 2 --quality 92 \
    --json "${extra[@]}" --overwrite

echo "== 8. the Python API"
python "$here/python_api.py" "$work/lr/shapes_rgb_160x120.png" "$work/api_x4.png" ${SEESR_EXAMPLE_STEPS:+--steps "$SEESR_EXAMPLE_STEPS"}

echo "done: results in $work"
