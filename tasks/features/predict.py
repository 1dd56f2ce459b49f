"""`videoanyup features DATASET`: a whole dataset through backbone and upsampler with Lightning `Trainer.predict`.

The items are videos. `LongestFirstSampler` deals them to the ranks (devices × nodes), longest first;
each rank runs `FeatureExtraction.predict_step` on one video at a time, which streams the clip through
the backbone and the upsampler in frame chunks and writes `OUT/videos/<name>/` (shards + index.json,
built under a hidden name and renamed when complete: `extract.write_video_features`), then appends the
video's line to the manifest at once, so readers see it while the run goes on. A video that fails gets a
manifest line with its error and the rank goes on. Rank 0 writes `features.json` first and compacts the
manifest at the start and the end (`manifest.py`). Rerunning skips complete videos and redoes the rest.

One run at a time: the launching process holds OUT's lock for the whole run (`output_lock.exclusive`); a
second run exits at once naming the first one's process. Ctrl-C reaches the command line as
`KeyboardInterrupt` (one line, status 130), not through Lightning's graceful shutdown, which would end the
process with status 1 (the status of "videos failed").

Every process of a job runs the same command line (Lightning's launchers, SLURM included), so every
process lists the dataset, measures its videos and builds the same backbone and upsampler; Lightning then
copies rank 0's weights to the others.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from pathlib import Path

import lightning.pytorch as pl
import torch
from torch.utils.data import DataLoader, Dataset

from videoanyup.tasks import output_guard, output_lock
from videoanyup.tasks.features.dataset import VideoEntry
from videoanyup.tasks.features.manifest import (
    DATASET_FORMAT,
    LOGS_DIR,
    VIDEOS_DIR,
    append_record,
    is_complete,
    is_intact,
    merge_manifest,
    normalise,
    read_manifest,
    read_video_index,
    remove_owned_outputs,
    remove_stale_partials,
    write_settings,
)
from videoanyup.tasks.features.sampler import IDLE, LongestFirstSampler

log = logging.getLogger(__name__)


class VideoItems(Dataset):
    """The dataset's videos as items `{"index", "name", "path", "length"}` (metadata only; the rank decodes)."""

    def __init__(self, entries: list[VideoEntry], lengths: list[int]) -> None:
        self.entries, self.lengths = entries, lengths

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, i: int) -> dict:
        if i == IDLE:  # a rank with nothing to do (more ranks than videos)
            return {"index": IDLE}
        entry = self.entries[i]
        return {"index": i, "name": entry.name, "path": str(entry.path), "length": self.lengths[i]}


class VideoData(pl.LightningDataModule):
    """One loader per rank over its share of the videos (`LongestFirstSampler`), one video per step."""

    def __init__(self, entries: list[VideoEntry], lengths: list[int]) -> None:
        super().__init__()
        self.items = VideoItems(entries, lengths)

    def predict_dataloader(self) -> DataLoader:
        sampler = LongestFirstSampler(self.items.lengths, num_replicas=self.trainer.world_size, rank=self.trainer.global_rank)
        return DataLoader(self.items, sampler=sampler, batch_size=None, num_workers=0)


class VideoProgress(pl.Callback):
    """Rank 0's progress bar over its videos, with the frames per second it writes."""

    def on_predict_start(self, trainer: pl.Trainer, module: pl.LightningModule) -> None:
        from tqdm import tqdm

        total = sum(i != IDLE for i in trainer.predict_dataloaders.sampler)
        self.bar = tqdm(total=total, unit="video", desc=f"rank 0 of {trainer.world_size}", disable=trainer.global_rank != 0)
        self.began, self.frames = time.perf_counter(), 0

    def on_predict_batch_end(self, trainer, module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        self.frames += (outputs or {}).get("frames", 0) if (outputs or {}).get("status") == "done" else 0
        self.bar.update(0 if (outputs or {}).get("status") == "idle" else 1)
        self.bar.set_postfix(frames_per_s=f"{self.frames / max(time.perf_counter() - self.began, 1e-9):.2f}")

    def on_predict_end(self, trainer, module) -> None:
        self.bar.close()


class FeatureExtraction(pl.LightningModule):
    """Writes the features of one video per `predict_step`; the LightningModule of the dataset command.

    Args:
        backbone: a built backbone; upsampler: a VideoAnyUp, or None to store the backbone's LR features.
        out: the output folder; settings: what decides the features (`manifest.SETTING_KEYS`), recorded in
            `features.json`, every video's index and every manifest line.
        options: `write_video_features` options (size, short_side, mode, chunk_frames, shard_frames,
            query_tile, save_lr, compile); overwrite: redo complete videos too; reset: remove what this tool wrote
            in `out` first (settings changed under --overwrite); progress: per-video bars too.
    """

    def __init__(self, backbone, upsampler, *, out: Path, settings: dict, options: dict, overwrite: bool, reset: bool,
                 command: str, progress: bool = False) -> None:
        super().__init__()
        self.backbone, self.upsampler = backbone, upsampler
        self.out, self.settings, self.options = Path(out), normalise(settings), dict(options)
        self.overwrite, self.reset, self.command, self.progress = overwrite, reset, command, progress
        self._log_handler: logging.Handler | None = None

    # -- set-up and tear-down: rank 0 owns the dataset-level files ---------------------------------------
    def on_predict_start(self) -> None:
        rank, world = self.global_rank, self.trainer.world_size
        handler = output_lock.log_handler(
            self.out / LOGS_DIR / f"rank{rank}.log",
            logging.Formatter(f"%(asctime)s rank {rank}/{world} %(levelname)s %(name)s: %(message)s"),
        )
        logging.getLogger("videoanyup").addHandler(handler)
        self._log_handler = handler
        self.settings = self.trainer.strategy.broadcast(self.settings, 0)  # the weights are rank 0's (Lightning syncs them)
        if rank == 0:
            if self.reset:
                removed = remove_owned_outputs(self.out)
                log.info("--overwrite with changed settings: removed %d video folders written before", len(removed))
            else:
                merge_manifest(self.out)  # the newest line per video (and an earlier version's per-rank files)
            write_settings(self.out, self.settings, command=self.command)
        self.trainer.strategy.barrier("features-start")
        share = sum(i != IDLE for i in self.trainer.predict_dataloaders.sampler)
        log.info("rank %d/%d on %s: %d videos to do", rank, world, self.device, share)

    def on_predict_end(self) -> None:
        self.trainer.strategy.barrier("features-end")
        if self.global_rank == 0:
            records = merge_manifest(self.out)
            log.info("manifest: %d videos, %d failed", len(records), sum(r["status"] == "failed" for r in records.values()))
        self.trainer.strategy.barrier("features-merged")
        if self._log_handler is not None:
            logging.getLogger("videoanyup").removeHandler(self._log_handler)
            self._log_handler.close()

    # -- one video ---------------------------------------------------------------------------------------
    def _record(self, item: dict, status: str, **fields) -> dict:
        return {"video": item["name"], "path": item["path"], "status": status, "rank": self.global_rank,
                "backbone": self.settings["backbone"], "backbone_hash": self.settings["backbone_hash"],
                "upsampler": self.settings["upsampler"], "upsampler_hash": self.settings["upsampler_hash"]} | fields

    def _done(self, item: dict, index: dict, folder: Path, resumed: bool) -> dict:
        return self._record(
            item, "done", folder=f"{VIDEOS_DIR}/{folder.name}", frames=index["frames"], shape=index["shape"],
            dtype=index["dtype"], seconds=index.get("seconds"), written_by_rank=index.get("rank"), resumed=resumed,
        )

    def predict_step(self, item: dict, batch_idx: int) -> dict:
        from videoanyup.tasks.features.extract import write_video_features
        from videoanyup.tasks.video_io import probe

        if item["index"] == IDLE:
            log.info("rank %d: no video to do", self.global_rank)
            return {"status": "idle"}
        began = time.perf_counter()
        videos = self.out / VIDEOS_DIR
        folder, path = videos / item["name"], Path(item["path"])
        try:
            info = probe(path)
            index = read_video_index(folder)
            if folder.exists() and index is None:
                entries = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
                held = f" (it holds {str(folder / entries[0])!r})" if entries else ""
                raise ValueError(f"{str(folder)!r} exists and was not written by `videoanyup features`{held}; move it away")
            complete = is_complete(index, folder, settings=self.settings, frames=info.num_frames, source=item["path"])
            if complete and not self.overwrite:
                log.info("rank %d: %s already complete (%d frames), skipped", self.global_rank, item["name"], info.num_frames)
                record = self._done(item, index, folder, resumed=True)
            else:
                remove_stale_partials(videos, item["name"])
                log.info("rank %d: %s (%d frames) from %s", self.global_rank, item["name"], info.num_frames, path)
                index = write_video_features(
                    path, folder, self.backbone, self.upsampler, info=info, source=item["path"], start=0,
                    count=info.num_frames, overwrite=index is not None, progress=self.progress,
                    extra={"backbone": self.settings["backbone"], "random_backbone": self.options["random_backbone"],
                           "seed": self.options["seed"], "precision": self.settings["precision"],
                           "weights": self.settings["upsampler"], "command": self.command, "dataset": DATASET_FORMAT,
                           "video": item["name"], "settings": self.settings, "rank": self.global_rank},
                    **{k: self.options[k] for k in ("size", "short_side", "mode", "chunk_frames", "shard_frames",
                                                    "query_tile", "save_lr", "compile")},
                )
                seconds = time.perf_counter() - began
                log.info("rank %d: %s done, %d frames in %.1f s (%.2f frames/s)", self.global_rank, item["name"],
                         index["frames"], seconds, index["frames"] / max(seconds, 1e-9))
                record = self._done(item, index, folder, resumed=False)
        except Exception as error:  # a bad video must not stop the run: its line says why
            log.error("rank %d: %s failed: %s", self.global_rank, item["name"], error)
            message = f"{type(error).__name__}: {error}"
            old = read_manifest(self.out).get(item["name"])
            if old is not None and old.get("status") == "done" and is_intact(read_video_index(folder), folder,
                                                                              settings=self.settings):
                record = {k: v for k, v in old.items() if k != "resumed"} | {"rank": self.global_rank, "rerun_error": message}
            else:
                record = self._record(item, "failed", error=message, seconds=round(time.perf_counter() - began, 3))
        append_record(self.out, record)
        return record



# Lightning's precision names; the single-video spellings map onto them (the upsampler always runs in float32)
PRECISIONS = {"fp32": "32-true", "bf16": "bf16-mixed", "fp16": "16-mixed", "32-true": "32-true", "32": "32-true",
              "bf16-mixed": "bf16-mixed", "16-mixed": "16-mixed"}


def is_first_process() -> bool:
    """Whether this process is the job's rank 0, before Lightning has set the ranks up: no launcher's variable
    (torchrun, SLURM, MPI, Lightning's own launcher of the other local ranks, a node rank) names another."""
    names = ("RANK", "SLURM_PROCID", "LOCAL_RANK", "NODE_RANK", "GROUP_RANK", "JSM_NAMESPACE_RANK",
             "OMPI_COMM_WORLD_RANK", "PMI_RANK")
    return all(os.environ.get(name, "0") in ("0", "") for name in names)


def _predict(trainer: pl.Trainer, module: pl.LightningModule, data: pl.LightningDataModule) -> None:
    """`trainer.predict`, with Ctrl-C raised as `Interrupted` inside it (Lightning would turn a
    `KeyboardInterrupt` into `sys.exit(1)`), the other local ranks stopped, and `KeyboardInterrupt` raised."""
    from videoanyup.tasks.signals import Interrupted, interrupt_raises

    try:
        with interrupt_raises(Interrupted):
            trainer.predict(module, datamodule=data, return_predictions=False)
    except Interrupted:
        launcher = trainer.strategy.launcher
        if launcher is not None and hasattr(launcher, "kill"):  # the local ranks Lightning started
            launcher.kill(getattr(signal, "SIGKILL", signal.SIGTERM))
        raise KeyboardInterrupt from None


def _remove_if_untouched(out: Path, created: list[Path]) -> None:
    """After a failed start: remove the folders this run created if they hold nothing but its lock files."""
    locks = {output_lock.LOCK_FILE, output_lock.lock_file_of(out / "manifest.jsonl").name}
    if not created or not out.is_dir() or {e.name for e in os.scandir(out)} - locks:
        return
    output_guard.remove_listed(out, sorted(locks), remove_folder=False)
    output_guard.remove_folders(created)


def _positive(value, flag: str) -> None:
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ValueError(f"{flag} must be a positive integer, got {value!r}")


def extract_dataset(
    source: str | Path,
    out: str | Path,
    *,
    backbone: str,
    upsampler: str | None = None,
    random_backbone: bool = False,
    seed: int = 0,
    size=None,
    short_side: int | None = None,
    mode: str | None = None,
    chunk_frames: int = 4,
    shard_frames: int = 8,
    query_tile: int | None = None,
    compile: bool | str = False,
    save_lr: bool = False,
    precision: str = "fp32",
    accelerator: str = "auto",
    devices: int | str = "auto",
    num_nodes: int = 1,
    strategy: str = "auto",
    limit_videos: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
    command: str = "",
) -> dict | None:
    """Features of every video of the dataset `source` into `out` with Lightning `Trainer.predict`.

    Args:
        source: a folder of videos or frame folders, or a text file of paths (`dataset.py`).
        out: the output folder (`manifest.py` describes it); created, resumed, or refused when it holds
            features made with other settings (unless `overwrite`).
        upsampler: a VideoAnyUp checkpoint folder or bundled name (None: the bundled default), or "none"
            to store the backbone's LR features.
        limit_videos: only the K longest videos (a trial run; a later run does the rest).
        precision: fp32 / bf16 / fp16 or Lightning's names; autocast covers the backbone only.
        accelerator, devices, num_nodes, strategy: passed to `lightning.Trainer` (SLURM and torchrun are
            detected by Lightning).
        the rest: as for `extract.write_features`.
    Returns:
        On rank 0 the summary `{"videos", "done", "skipped", "failed": [names], "frames", "seconds", …}`;
        None on the other ranks.
    Raises:
        ValueError: bad arguments, naming the option; nothing is written.
    """
    from videoanyup.backbones.registry import build_backbone
    from videoanyup.backbones.spec import check_backbone_spec
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from videoanyup.tasks.features.dataset import dataset_root, list_videos, video_length
    from videoanyup.tasks.features.extract import check_stream_compile, load_upsampler
    from videoanyup.tasks.features.manifest import check_dataset_output, check_settings, state_hash

    began = time.perf_counter()
    check_backbone_spec(backbone, "--backbone")
    for value, flag in ((short_side, "--short-side"), (chunk_frames, "--chunk-frames"), (shard_frames, "--shard-frames"),
                        (query_tile, "--query-tile"), (limit_videos, "--limit-videos"), (num_nodes, "--num-nodes")):
        _positive(value, flag)
    if precision not in PRECISIONS:
        raise ValueError(f"--precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    precision = PRECISIONS[precision]
    source, out = Path(source).absolute(), Path(out)
    root = dataset_root(source).resolve()
    if source.is_dir() and (out.resolve() == root or root in out.resolve().parents):
        raise ValueError(f"-o {str(out)!r} is inside the dataset {str(root)!r}; its folders would become videos")
    inputs = [source, root]
    check_dataset_output(out, inputs)
    entries = list_videos(source)
    lengths = [video_length(entry.path) for entry in entries]
    if limit_videos is not None:
        keep = sorted(sorted(range(len(entries)), key=lambda i: (-lengths[i], i))[:limit_videos])
        entries, lengths = [entries[i] for i in keep], [lengths[i] for i in keep]

    no_upsampler = upsampler is not None and upsampler.lower() == "none"
    if no_upsampler and size is not None:
        raise ValueError("--size needs an upsampler (--upsampler none stores the backbone's own grid)")
    model, upsampler_name = (None, "none") if no_upsampler else load_upsampler(upsampler)
    mode = None if model is None else model.check_mode(mode)
    check_stream_compile(compile, model, mode)
    if random_backbone:
        torch.manual_seed(seed)
    try:
        net = build_backbone(backbone, random=random_backbone)
    except RuntimeError as error:  # pretrained weights neither cached nor downloadable
        raise ValueError(f"--backbone {backbone}: {error} (--random-backbone runs offline)") from error
    settings = {"backbone": backbone, "backbone_hash": state_hash(net), "upsampler": upsampler_name,
                "upsampler_hash": state_hash(model), "size": None if size is None else list(size),
                "short_side": short_side, "mode": mode, "precision": precision, "save_lr": bool(save_lr)}
    changed = check_settings(out, settings, overwrite=overwrite) if out.exists() else []

    module = FeatureExtraction(
        net, model, out=out, settings=settings, overwrite=overwrite, reset=bool(changed), command=command,
        options={"size": size, "short_side": short_side, "mode": mode, "chunk_frames": chunk_frames,
                 "shard_frames": shard_frames, "query_tile": query_tile, "save_lr": save_lr, "compile": compile,
                 "random_backbone": bool(random_backbone), "seed": seed if random_backbone else None},
    )
    try:
        trainer = pl.Trainer(
            accelerator=accelerator, devices=devices, num_nodes=num_nodes, strategy=strategy, precision=precision,
            logger=False, enable_checkpointing=False, enable_model_summary=False, enable_progress_bar=False,
            use_distributed_sampler=False, callbacks=[VideoProgress()] if progress else [],
        )
    except (MisconfigurationException, ValueError, RuntimeError) as error:
        raise ValueError(f"--accelerator / --devices / --num-nodes / --strategy / --precision: {error}") from error
    first = is_first_process()
    created = output_guard.make_folders(out)
    try:
        with output_lock.exclusive(out, "-o") if first else contextlib.nullcontext():
            if first:  # again, under the lock: another run may have written here since the checks above
                check_dataset_output(out, inputs)
                module.reset = bool(check_settings(out, settings, overwrite=overwrite))
            _predict(trainer, module, VideoData(entries, lengths))
    except BaseException:
        if first:
            _remove_if_untouched(out, created)
        raise
    if trainer.global_rank != 0:
        return None
    manifest = read_manifest(out)
    mine = [manifest[e.name] for e in entries if e.name in manifest]
    failed = [r for r in mine if r["status"] == "failed" or "rerun_error" in r]  # rerun_error: the old folder stays
    done = [r for r in mine if r["status"] == "done" and "rerun_error" not in r]
    return {
        "output": str(out),
        "videos": len(entries),
        "done": sum(not r.get("resumed") for r in done),
        "skipped": sum(bool(r.get("resumed")) for r in done),
        "failed": [r["video"] for r in failed],
        "errors": {r["video"]: r.get("error") or r["rerun_error"] for r in failed},
        "frames": sum(r["frames"] for r in done if not r.get("resumed")),
        "world_size": trainer.world_size,
        "seconds": round(time.perf_counter() - began, 2),
    }
