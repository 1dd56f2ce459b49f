#!/usr/bin/env bash
# One GPU session's checks, in one call (a few minutes on an H100/H200):
#   1. benchmarks/bench_cuda.py: CUDA vs CPU parity, bf16/fp16 autocast, BasicAVSR/VideoAnyUp speed + memory;
#   2. the GPU training recipes (configs/upsampler/dinov2_gpu.yaml, multi_gpu.yaml) for a few dozen steps:
#      bf16 autocast on CUDA, multi-backbone sampling, the per-step time and peak memory (StepTimer).
# Backbones are random (`--model.random_backbones true`): a machine without hub access has no pretrained weights;
# the cost of a step does not depend on the weights.
#   bash benchmarks/gpu_checks.sh OUT_DIR CLIP_DIR VAL_IMAGE_DIR [STEPS]
# Run it outside the repository root when videoanyup is installed non-editable (the root's videoanyup/ folder
# would shadow the installed package, which holds videoanyup.tasks).
set -u
repo=$(cd "$(dirname "$0")/.." && pwd)
out=${1:?OUT_DIR}; clips=${2:?CLIP_DIR (a folder of frame folders)}; val=${3:?VAL_IMAGE_DIR}; steps=${4:-40}
mkdir -p "$out"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 WANDB_MODE=offline
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())" | tee -a "$out/gpu.txt"

echo "== bench_cuda"
timeout 200 python3 "$repo/benchmarks/bench_cuda.py" --json "$out/bench_cuda.json" 2>&1 | tee "$out/bench_cuda.log" \
  || echo "bench_cuda FAILED or timed out"

train() {  # NAME CONFIG [overrides...]
  local name=$1 config=$2; shift 2
  echo "== train-upsampler $config ($steps steps)"
  timeout 150 python3 -m videoanyup.tasks.cli train-upsampler --config "$config" \
    --model.random_backbones true \
    --data.clip_sources "[$(ls -d "$clips"/*/ | sed 's:/$::' | paste -sd, -)]" \
    --data.image_sources "[skimage:astronaut,skimage:coffee,skimage:chelsea,skimage:rocket]" \
    --data.val_sources "[$val]" --data.steps_per_epoch "$steps" \
    --trainer.max_steps "$steps" --trainer.val_check_interval "$steps" --trainer.log_every_n_steps 1 \
    --logging.save_dir "$out/runs" --logging.name "$name" --logging.wandb off ${EXTRA_OVERRIDES:-} "$@" 2>&1 \
    | grep -v "Warning\|warn(" | tee "$out/train_$name.log" | grep -E "speed:|Error|error|Traceback" \
    || echo "train $name: no summary line (see train_$name.log)"
  cp "$out/runs/$name/version_0/metrics.csv" "$out/metrics_$name.csv" 2>/dev/null
}
train dinov2 "$repo/configs/upsampler/dinov2_gpu.yaml"
train multi "$repo/configs/upsampler/multi_gpu.yaml"
rm -rf "$out/runs"
