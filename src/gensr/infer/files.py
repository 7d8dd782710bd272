"""Which files a batch of `gensr upscale` / `gensr sample` reads and writes, checked before any is.

Inputs are files as given and folders expanded to the images inside them. Every output path is
checked against every input (resolved path, symlink target, hard link) and against files the tool
did not write itself (its outputs carry the PNG text chunk `MARK`); any hit refuses the whole run
with a UserError, before anything is written.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from gensr.errors import UserError
from gensr.io import IMAGE_SUFFIXES, atomic_temp_target, scan_images

MARK = {"Software": "gensr upscale"}  # on every output: only files carrying it are ever replaced

Plan = list[tuple[Path, Path]]  # (input, output)


def list_inputs(items: Sequence[str], out_dir: Path) -> tuple[list[Path], list[str]]:
    """Files as given, folders expanded to the images inside them (sorted), and one failure line
    per unusable entry. An output folder inside an input folder holds earlier outputs: not inputs."""
    files, failed, out = [], [], _real(out_dir)
    for item in items:
        p = Path(item)
        if not p.is_dir():
            files.append(p)  # decode_image reports a missing file, a broken link, ...
            continue
        found, unusable = scan_images(p)
        if out != _real(p):
            found = [f for f in found if not _real(f).is_relative_to(out)]
            unusable = [(f, why) for f, why in unusable if not _real(f).is_relative_to(out)]
        failed += [f"{f}: {why}" for f, why in unusable]
        if not found and not unusable:
            failed.append(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        files += found
    return files, failed


def _real(p: Path) -> Path:
    return Path(os.path.realpath(p))  # Path.resolve raises on a symlink loop; realpath does not


def _file_id(p: Path) -> tuple[int, int] | None:
    try:
        st = p.stat()  # follows links: a symlink and its target share the id, as hard links do
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _ours(p: Path) -> bool:
    """Whether `p` is a PNG this tool wrote (and may therefore replace)."""
    try:
        with Image.open(p) as im:
            return not p.is_symlink() and im.format == "PNG" and im.info.get("Software") == MARK["Software"]
    except Exception:  # a folder, unreadable, not an image: someone else's
        return False


def plan_outputs(files: list[Path], out_dir: Path) -> tuple[Plan, list[str]]:
    """(input, output) pairs, and a failure line for each input whose output name another took.
    Raises UserError, before anything is written, if an output would land on an input (same path,
    through a symlink or a hard link) or on an existing file that gensr upscale did not write."""
    ids: dict = {}
    for f in files:
        ids[_real(f)] = f
        if (fid := _file_id(f)) is not None:
            ids[fid] = f
    plan, failed, taken, clashes, foreign = [], [], {}, [], []
    for src in files:
        dst = out_dir / f"{src.stem}.png"
        if dst in taken:
            failed.append(f"{src}: its output {dst} is already the output of {taken[dst]}")
            continue
        taken[dst] = src
        hit = ids.get(_real(dst)) or ids.get(_file_id(dst))
        if hit is not None:
            clashes.append(f"output {dst} would overwrite the input {hit}")
        elif (dst.exists() or dst.is_symlink()) and not _ours(dst):
            foreign.append(f"output {dst} already exists and was not written by gensr upscale")
        plan.append((src, dst))
    for found, advice in ((clashes, "choose an --out-dir that holds none of the inputs"),
                          (foreign, "move it away or choose another --out-dir")):
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise UserError(f"{found[0]}{more}: {advice}; nothing was written")
    return plan, failed


def make_out_dir(out_dir: Path, plan: Plan) -> None:
    """Create the output folder (UserError if it cannot be) and remove the temp files of this
    plan's outputs that a killed run left (os.replace never ran for them)."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"--out-dir {out_dir}: cannot create it ({e.strerror})") from e
    names = {dst.name for _, dst in plan}
    for entry in os.scandir(out_dir):
        if atomic_temp_target(entry.name) in names:
            Path(entry.path).unlink(missing_ok=True)
