"""Throughput of the prepare stage: megapixels of HR processed per second with 1 and 2 workers.

    python bench/prepare.py [--folder DIR] [hydra overrides, e.g. degradation=realistic]

Photos: --folder; else the 40 camera photos of ../shared/scripts/get_photos.py (fetched once
into --cache, needs apt-get as root); else the embedded scikit-image photos. Each run is the
real stage (read, modcrop, degrade, write PNG pairs + manifests) into a temporary folder.
"""
from __future__ import annotations

import argparse
import logging
import os
import resource
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from gensr.config import compose  # noqa: E402
from gensr.data.prepare import prepare  # noqa: E402

GET_PHOTOS = ROOT.parent / "shared" / "scripts" / "get_photos.py"


def photo_folder(args: argparse.Namespace) -> Path | None:
    if args.folder:
        return args.folder
    if not GET_PHOTOS.is_file():
        print(f"{GET_PHOTOS} absent: benchmarking the embedded photos")
        return None
    if len(list(args.cache.glob("*.png"))) < 40:
        cmd = [sys.executable, str(GET_PHOTOS), str(args.cache)]
        if subprocess.run(cmd).returncode != 0:  # a fresh machine: the package lists are missing
            subprocess.run(["apt-get", "update", "-qq"], check=True)
            subprocess.run(cmd, check=True)
    return args.cache


def cpu_seconds() -> tuple[float, float]:
    """User + system CPU time of this process and of its finished children (the pool's workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime, kids.ru_utime + kids.ru_stime


def throughput(folder: Path | None, workers: list[int], overrides: list[str] = (),
               say=print) -> list[tuple[int, float]]:
    """(workers, HR megapixels/s) per run of the real prepare stage, each into a temporary folder
    (`folder` None: the embedded photos). bench/speed.py calls this too."""
    base = list(overrides)
    if folder is not None:
        base += ["data=folder", f"data.folder={Path(folder).resolve()}"]
    rates = []
    for n in workers:
        with tempfile.TemporaryDirectory(prefix="gensr-bench-") as tmp:
            cfg = compose([*base, f"data.workers={n}", f"data.out_dir={tmp}/prepared"], root=ROOT)
            own0, kids0 = cpu_seconds()
            s = prepare(cfg, ROOT)
            own1, kids1 = cpu_seconds()
        images = sum(s["counts"].values())
        rates.append((n, s["hr_megapixels"] / s["seconds"]))
        cpu, main_cpu = own1 - own0 + kids1 - kids0, own1 - own0
        # CPU-s / (wall x workers) well below 100% means the workers waited for a core: other load
        # on the machine (Linux autogroup gives each busy session one share, however many workers).
        say(
            f"workers={n}: {images} photos, {s['hr_megapixels']:.1f} HR megapixels in "
            f"{s['seconds']:.1f} s = {rates[-1][1]:.2f} MP/s (x{cfg.degradation.scale} {cfg.degradation.kind}); "
            f"{cpu:.1f} CPU-s ({main_cpu:.1f} in the main process), {cpu / (s['seconds'] * n):.0%} of "
            f"{n} core(s) busy; load average {os.getloadavg()[0]:.1f}"
        )
    return rates


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folder", type=Path, help="photos to prepare (default: the 40 shared photos)")
    ap.add_argument("--cache", type=Path, default=Path("/tmp/gensr-photos"))
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("overrides", nargs="*", help="Hydra overrides, e.g. degradation=realistic")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)

    rates = dict(throughput(photo_folder(args), args.workers, args.overrides))
    if 1 in rates and 2 in rates:
        print(f"2 workers vs 1: {rates[2] / rates[1]:.2f}x (target >= 1.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
