"""Which files a batch of `gensr upscale` / `gensr sample` reads and writes, checked before any is.

Inputs are files as given and folders expanded to the images inside them. A file given by name
becomes `<OUTDIR>/<stem>.png`; a folder's images keep their place below it
(`photos/2024/IMG_1.jpg` -> `<OUTDIR>/2024/IMG_1.png`), so same-named photos of different
subfolders do not collide. Every output path is checked against every input (resolved path,
symlink target, hard link), against files the tool did not write itself (its outputs carry the
PNG text chunk `MARK`) and against output subfolders that link out of OUTDIR; any hit refuses the
whole run with a UserError, before anything is written.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from gensr.errors import UserError
from gensr.io import IMAGE_SUFFIXES, atomic_temp_target, scan_images

MARK = {"Software": "gensr upscale"}  # on every output: only files carrying it are ever replaced

Inputs = list[tuple[Path, Path]]  # (input file, its output's path relative to the output folder)
Plan = list[tuple[Path, Path]]  # (input, output)


def list_inputs(items: Sequence[str], out_dir: Path) -> tuple[Inputs, list[str], list[str]]:
    """(input, relative output) pairs of files as given and of the images inside folders (sorted),
    one failure line per unusable entry, and one note per folder with files of other types.
    An output folder inside an input folder holds earlier outputs: not inputs."""
    inputs, failed, notes, out = [], [], [], _real(out_dir)
    for item in items:
        p = Path(item)
        if not p.is_dir():
            inputs.append((p, Path(f"{p.stem}.png")))  # decode_image reports a missing file, ...
            continue
        found, unusable = scan_images(p)
        if out != _real(p):
            found = [f for f in found if not _real(f).is_relative_to(out)]
            unusable = [(f, why) for f, why in unusable if not _real(f).is_relative_to(out)]
        failed += [f"{f}: {why}" for f, why in unusable]
        if not found and not unusable:
            failed.append(f"{p}: folder holds no images ({', '.join(sorted(IMAGE_SUFFIXES))})")
        inputs += [(f, f.relative_to(p).with_name(f"{f.stem}.png")) for f in found]
        if others := _other_files(p, out):
            shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
            notes.append(f"{p}: skipped {len(others)} file(s) not named as images "
                         f"({', '.join(sorted(IMAGE_SUFFIXES))}): {shown}")
    return inputs, failed, notes


def _other_files(folder: Path, out: Path) -> list[str]:
    """Files below `folder` that a folder scan does not take (other extensions), outputs excluded."""
    others = []
    for root, _, names in os.walk(folder):
        if _real(Path(root)).is_relative_to(out) and out != _real(folder):
            continue
        others += [str(Path(root, n).relative_to(folder)) for n in sorted(names)
                   if Path(n).suffix.lower() not in IMAGE_SUFFIXES]
    return sorted(others)


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


def plan_outputs(inputs: Inputs, out_dir: Path) -> tuple[Plan, list[str]]:
    """(input, output) pairs, and a failure line for each input whose output name another took.
    Raises UserError, before anything is written, if an output would land on an input (same path,
    through a symlink or a hard link), on an existing file that gensr upscale did not write, or in
    an existing output subfolder that links out of `out_dir`."""
    ids: dict = {}
    for f, _ in inputs:
        ids[_real(f)] = f
        if (fid := _file_id(f)) is not None:
            ids[fid] = f
    plan, failed, taken, clashes, foreign, blocked = [], [], {}, [], [], []
    for src, rel in inputs:
        dst = out_dir / rel
        if dst in taken:
            failed.append(f"{src}: its output {dst} is already the output of {taken[dst]}")
            continue
        taken[dst] = src
        hit = ids.get(_real(dst)) or ids.get(_file_id(dst))
        if hit is not None:
            clashes.append(f"output {dst} would overwrite the input {hit}")
        elif (why := _bad_subfolder(out_dir, rel)) is not None:
            blocked.append(why)
        elif (dst.exists() or dst.is_symlink()) and not _ours(dst):
            foreign.append(f"output {dst} already exists and was not written by gensr upscale")
        plan.append((src, dst))
    for found, advice in ((clashes, "choose an --out-dir that holds none of the inputs"),
                          (blocked, "move it away or choose another --out-dir"),
                          (foreign, "move it away or choose another --out-dir")):
        if found:
            more = f" (and {len(found) - 1} more)" if len(found) > 1 else ""
            raise UserError(f"{found[0]}{more}: {advice}; nothing was written")
    return plan, failed


def _bad_subfolder(out_dir: Path, rel: Path) -> str | None:
    """Why the subfolders of output `out_dir / rel` cannot hold it (a file in the way, a link
    out of `out_dir`), or None."""
    for part in reversed(rel.parents[:-1]):  # out/a, out/a/b, ... (not out_dir itself)
        folder = out_dir / part
        if folder.is_symlink() or (folder.exists() and not folder.is_dir()):
            if not folder.is_dir():
                return f"output folder {folder} exists and is not a folder"
            if not _real(folder).is_relative_to(_real(out_dir)):
                return f"output folder {folder} links to {_real(folder)}, outside {out_dir}"
    return None


def make_out_dir(out_dir: Path, plan: Plan) -> None:
    """Create the output folder and the subfolders of this plan's outputs (UserError if one cannot
    be), and remove the temp files of this plan's outputs that a killed run left (os.replace never
    ran for them)."""
    folders: dict[Path, set[str]] = {out_dir: set()}
    for _, dst in plan:
        folders.setdefault(dst.parent, set()).add(dst.name)
    for folder, names in folders.items():
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            what = "--out-dir" if folder == out_dir else "output folder"
            raise UserError(f"{what} {folder}: cannot create it ({e.strerror})") from e
        for entry in os.scandir(folder):
            if atomic_temp_target(entry.name) in names:
                Path(entry.path).unlink(missing_ok=True)
