"""The prepare stage: photos -> degraded LR/HR PNG pairs + one manifest per split.

    data/prepared/{train,val,test}/{hr,lr}/<name>.png   (LR name == HR name; HR modcropped)
    data/prepared/{train,val,test}.json                  (what each pair is made of, see README)

Crash safety: everything is built in a sibling staging folder (`.prepared.partial`) and swapped
in at the end, so `data/prepared` is always either the previous complete result or the new one,
never a mix, and nothing from a previous config lingers. A finished pair's record is written
after its two PNGs; a rerun with the same config and code reuses finished pairs and completes.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import time
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_context
from pathlib import Path

from omegaconf import DictConfig, OmegaConf
from tqdm import tqdm

from gensr.data import sources
from gensr.data.bad_inputs import BadInputs
from gensr.data.pair_job import PairJob, make_pair, pair_paths, record_path
from gensr.data.sources import DataError
from gensr.io import aside_path, atomic_write_json, check_replaceable, exclusive_output, replace_dir

log = logging.getLogger("gensr.prepare")
# What data.out_dir holds (a folder of only these, unmarked, is an output of an earlier gensr).
OUTPUTS = frozenset(sources.SPLITS) | {f"{s}.json" for s in sources.SPLITS}

def _abs(root: Path, p: str | os.PathLike) -> Path:
    p = Path(p)
    return p if p.is_absolute() else root / p


def _staging(out_dir: Path) -> Path:
    return out_dir.with_name(f".{out_dir.name}.partial")


def _folder(cfg: DictConfig, root: Path) -> Path:
    """data.folder, refused when it overlaps a folder any stage writes (checked before any write):
    a photo folder inside an output would be deleted by the next run, an output inside it would
    mix generated files into the user's photos."""
    if not cfg.data.get("folder"):
        raise DataError("data.source=folder needs data.folder=/path/to/photos")
    folder = _abs(root, cfg.data.folder)
    out_dir = _abs(root, cfg.data.out_dir)
    written = {
        "data.out_dir": out_dir,
        "prepare's staging folder": _staging(out_dir),
        "prepare's previous output while swapping": aside_path(out_dir),
        "models/ (train)": root / "models",
        "checkpoints/ (train)": root / "checkpoints",
        "reports/ (evaluate)": root / "reports",
        "export.out_dir": _abs(root, OmegaConf.select(cfg, "export.out_dir", default="exports")),
    }
    real = Path(os.path.realpath(folder))
    for key, out in written.items():
        out_real = Path(os.path.realpath(out))
        if real == out_real or real in out_real.parents or out_real in real.parents:
            raise DataError(
                f"data.folder {folder} and {key} {out} overlap: stage outputs never go inside the photo "
                "folder, nor photos inside an output folder; move the photos or change the output path")
    return folder


def _fingerprint(cfg: DictConfig) -> str:
    """Config + the code that makes pairs: a staging folder from anything else is discarded."""
    h = hashlib.sha256()
    conf = {k: OmegaConf.to_container(cfg[k], resolve=True) for k in ("data", "degradation")}
    conf["data"].pop("workers", None)  # how many processes made a pair does not change it
    h.update(json.dumps(conf, sort_keys=True).encode())
    pkg = Path(__file__).resolve().parent
    for code in sorted(pkg.glob("*.py")) + [pkg.parent / "io.py"]:
        h.update(code.read_bytes())
    return h.hexdigest()


def _open_staging(staging: Path, fingerprint: str) -> None:
    stamp = staging / "fingerprint.txt"
    if staging.exists() and not (stamp.is_file() and stamp.read_text() == fingerprint):
        log.info("discarding %s (left by an interrupted run with another config)", staging)
        shutil.rmtree(staging)
    if not staging.exists():
        staging.mkdir(parents=True)
        stamp.write_text(fingerprint)


def _finished(job: PairJob) -> dict | None:
    """The record of a pair an interrupted run with the same config already completed."""
    rec = record_path(job.staging, job.candidate.name)
    if not rec.is_file() or not all(p.is_file() for p in pair_paths(job.staging, job.candidate.name)):
        return None
    record = json.loads(rec.read_text())
    return record if record.get("source_sha256") == job.candidate.sha256 else None


def _run(jobs: list[PairJob], workers: int, bad: BadInputs) -> dict[str, dict]:
    records: dict[str, dict] = {}
    todo = []
    for job in jobs:
        done = _finished(job)
        if done is not None:
            records[done["name"]] = done
        else:
            todo.append(job)
    if len(todo) < len(jobs):
        log.info("resuming: %d of %d pairs already made by an interrupted run", len(jobs) - len(todo), len(jobs))

    def collect(result: dict) -> None:
        if "ok" in result:
            records[result["ok"]["name"]] = result["ok"]
        else:
            bad.add(sources.Skipped(result["bad"]["source"], result["bad"]["reason"]))

    bar = tqdm(total=len(todo), desc="prepare", unit="img", dynamic_ncols=True)
    try:
        if workers <= 1 or len(todo) <= 1:
            for job in todo:
                collect(make_pair(job))
                bar.update()
            return records
        # spawn: workers start clean (no inherited threads/locks) and see this sys.path.
        with ProcessPoolExecutor(workers, mp_context=get_context("spawn")) as pool:
            pending = {pool.submit(make_pair, job) for job in todo}
            try:
                while pending:
                    finished, pending = wait(pending, return_when=FIRST_COMPLETED)
                    for fut in finished:
                        collect(fut.result())
                        bar.update()
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
        return records
    finally:
        bar.close()


def _collect(cfg: DictConfig, root: Path) -> tuple[list, dict | None, list[str], BadInputs]:
    """The photos to make pairs of, their split when lists fix it, ignored photos, bad ones so far."""
    data = cfg.data
    folder = None
    if data.source == "embedded":
        cands, pre_bad = sources.embedded_candidates()
    elif data.source == "folder":
        folder = _folder(cfg, root)
        cands, pre_bad = sources.folder_candidates(folder)
    else:
        raise DataError(f"data.source must be embedded or folder, got {data.source!r}")
    bad = BadInputs(data.on_bad_image, folder)
    for s in pre_bad:
        bad.add(s)
    bad.warn_not_photos()
    split_of, ignored = None, []
    if data.split.get("lists"):
        lists = OmegaConf.to_container(data.split.lists, resolve=True)
        split_of, ignored = sources.assign_from_lists(cands, lists, root)
        cands = [c for c in cands if c.name in split_of]
    cands, dups = sources.find_duplicates(cands, split_of)
    for s in dups:
        bad.add(s)
    return cands, split_of, ignored, bad


def _publish(staging: Path, out_dir: Path, records: dict, split_of: dict, header: dict) -> dict:
    """Move pairs into their split folders, write the manifests, swap staging in for out_dir."""
    # Split folders left by a run killed while publishing: their pairs are remade in pairs/
    # (a photo since removed from the folder must not ride along into the result).
    for leftover in (*sources.SPLITS, *(f"{s}.json" for s in sources.SPLITS)):
        p = staging / leftover
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    by_split: dict[str, list[dict]] = {s: [] for s in sources.SPLITS}
    for name in sorted(records):
        split, rec = split_of[name], dict(records[name])
        for kind, src in zip(("hr", "lr"), pair_paths(staging, name)):
            rec[kind] = f"{split}/{kind}/{name}.png"
            (staging / rec[kind]).parent.mkdir(parents=True, exist_ok=True)
            os.replace(src, staging / rec[kind])
        rec["split"] = split
        by_split[split].append(rec)
    counts = {s: len(v) for s, v in by_split.items()}
    for split, recs in by_split.items():
        for kind in ("hr", "lr"):
            (staging / split / kind).mkdir(parents=True, exist_ok=True)
        atomic_write_json(staging / f"{split}.json", {"split": split, **header, "counts": counts, "images": recs})
    for leftover in ("pairs", "records", "fingerprint.txt"):
        p = staging / leftover
        shutil.rmtree(p) if p.is_dir() else p.unlink(missing_ok=True)
    replace_dir(staging, out_dir, OUTPUTS)
    return counts


def prepare(cfg: DictConfig, root: Path) -> dict:
    """Run the stage for a composed config (params.yaml + overrides). Returns a summary."""
    from hydra.utils import instantiate

    t0 = time.perf_counter()
    data = cfg.data
    channels = int(data.channels)
    if channels not in (1, 3):
        raise DataError(f"data.channels must be 1 or 3, got {channels}")
    if not isinstance(cfg.get("degradation"), DictConfig):
        # `degradation=realistic` picks a conf/ group: only composing conf/ resolves it.
        raise DataError(
            f"degradation is {cfg.get('degradation')!r}, not a config: select a degradation group with "
            "`gensr params degradation=NAME` or `dvc exp run -S degradation=NAME`, then rerun"
        )
    degradation = instantiate(cfg.degradation, _convert_="all")
    out_dir = _abs(root, data.out_dir)
    check_replaceable(out_dir, "data.out_dir", OUTPUTS)  # before any work: the result replaces it whole
    staging = _staging(out_dir)

    cands, split_of, ignored, bad = _collect(cfg, root)  # refuses a photo folder that overlaps an output
    # One writer per output: a second run (bench/quality.py fine-tunes side by side) is refused,
    # not left to race this one for the staging folder. Taken only after the overlap check: the
    # lock file sits beside the output, which must never be inside the photos.
    with exclusive_output(out_dir, "prepare"):
        _open_staging(staging, _fingerprint(cfg))
        min_side, max_pixels = int(data.get("min_side") or 0), data.get("max_pixels")
        jobs = [
            PairJob(c, degradation, channels, max_pixels, min_side, str(staging))
            for c in sorted(cands, key=lambda c: -c.weight)  # big photos first: workers finish together
        ]
        records = _run(jobs, int(data.get("workers") or os.cpu_count() or 1), bad)
        if not records:
            n_bad = sum(s.bad for s in bad.skipped)
            raise DataError(f"{bad.where or 'embedded photos'}: no usable training image, all {n_bad} photo(s) "
                            "were skipped (see the warnings)")
        if split_of is None:
            sp = data.split
            split_of = sources.split_by_seed(list(records), sp.seed, float(sp.val_fraction), float(sp.test_fraction))
        if not any(split_of[n] == "train" for n in records):
            raise DataError("no usable training image left (all were skipped or none is listed for train)")

        header = {
            "source": data.source,
            "folder": str(bad.where) if bad.where else None,
            "scale": degradation.scale,
            "channels": channels,
            "degradation_config": OmegaConf.to_container(cfg.degradation, resolve=True),
            "split_config": OmegaConf.to_container(data.split, resolve=True),
            "skipped": bad.summary(),  # run-wide: the same block in every split's manifest
            "ignored_not_in_split_lists": ignored,
        }
        counts = _publish(staging, out_dir, records, split_of, header)
    summary = {
        "counts": counts, "skipped": len(bad.skipped), "out_dir": str(out_dir),
        "hr_megapixels": sum(r["hr_size"][0] * r["hr_size"][1] for r in records.values()) / 1e6,
        "seconds": time.perf_counter() - t0,
    }
    log.info(
        "prepared %s pairs (x%d %s, %d channel(s)) in %s; skipped %d bad image(s) in %.1f s",
        " / ".join(f"{n} {s}" for s, n in counts.items()), degradation.scale,
        degradation.kind, channels, out_dir, summary["skipped"], summary["seconds"],
    )
    return summary
