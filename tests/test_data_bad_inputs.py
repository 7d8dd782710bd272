"""Bad photos and bad data settings refused by the stage script: one line naming the file or key and
exit status 2; the photo folder is never modified, and a refused run publishes nothing. (What a run
that goes on does with bad photos: test_data_photo_intake.py.)"""
import hashlib
import os
import runpy
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from data_photos import BAD, ROOT, write_photos

from gensr.config import write_params
from gensr.errors import EXIT_USER_ERROR


def snapshot(folder: Path) -> dict[str, tuple]:
    """Every entry below `folder` (links not followed): content hash, link target or kind, and the
    folders' mtimes (a file created and deleted again still changes its folder's mtime)."""
    out = {".": ("dir", folder.lstat().st_mtime_ns)} if folder.is_dir() else {}
    for root, dirs, files in os.walk(folder):
        for name in dirs + files:
            p = Path(root) / name
            st = p.lstat()
            rel = p.relative_to(folder).as_posix()
            if stat.S_ISLNK(st.st_mode):
                out[rel] = ("link", os.readlink(p))
            elif stat.S_ISREG(st.st_mode):
                out[rel] = ("file", hashlib.sha256(p.read_bytes()).hexdigest(), st.st_mtime_ns, st.st_mode)
            else:
                out[rel] = ("other", stat.S_IFMT(st.st_mode), st.st_mtime_ns)
    return out


# The refusal matrix. Each case fills `photos` (and may point data.* elsewhere) and returns the
# extra overrides and the texts the one-line message must hold. T = the case's temp folder.
def _bad_photo(case):
    def setup(photos, t, proj):
        name, make, extra, _ = BAD[case]
        (photos / name).write_bytes(make())
        return ["data.on_bad_image=fail", *(f"data.{k}={v}" for k, v in extra.items())], [str(photos / name)]
    return setup


def _entry(make, name):
    def setup(photos, t, proj):
        make(photos, t)
        return ["data.on_bad_image=fail"], [name]
    return setup


def _overlap(folder_at, out_at, clash=None):
    """data.folder and data.out_dir; `clash`: the output folder the message names (default out_dir)."""
    def setup(photos, t, proj):
        folder, out = folder_at(photos, t, proj), out_at(photos, t, proj)
        if folder != photos:
            write_photos(folder, 2)
        named = proj / clash if clash else out
        return [f"data.folder={folder}", f"data.out_dir={out}"], [str(folder), str(named)]
    return setup


def _missing_list(photos, t, proj):
    return [f"data.split.lists={{train: [p0], test: {t / 'held_out.txt'}}}"], [str(t / "held_out.txt")]


def _duplicate_across_splits(photos, t, proj):
    shutil.copy(photos / "p0.png", photos / "again.png")
    lists = "{train: [p0, p1], val: [p2], test: [again]}"
    return [f"data.split.lists={lists}", "data.on_bad_image=fail"], ["again.png", "across splits"]


def _linked(link: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)
    return link


def _clash(photos, t, proj):
    (photos / "a").mkdir()
    write_photos(photos / "a", 1, prefix="b")
    write_photos(photos, 1, prefix="a__b")
    return [], ["a/b0.png", "a__b0.png"]


def _only_bad(photos, t, proj):
    for p in photos.iterdir():
        p.write_bytes(b"junk")
    return [], [str(photos), "no usable training image"]


def _no_images(photos, t, proj):
    for p in photos.iterdir():
        p.unlink()
    (photos / "readme.txt").write_text("no photos here")
    return [], [str(photos), "holds no images", "readme.txt"]


def _folder_is_a_file(photos, t, proj):
    (t / "a_file.png").write_bytes(b"x")
    return [f"data.folder={t / 'a_file.png'}"], [f"data.folder {t / 'a_file.png'} is not a folder"]


MATRIX = {
    **{f"fail_{c}": _bad_photo(c) for c in BAD},
    "fail_folder_named_like_an_image": _entry(lambda p, t: write_photos(p / "x.png", 1, prefix="in"), "x.png"),
    "fail_broken_link": _entry(lambda p, t: (p / "link.png").symlink_to(t / "nowhere.png"), "link.png"),
    "fail_link_loop": _entry(lambda p, t: (p / "link.png").symlink_to(p / "link.png"), "link.png"),
    "fail_fifo": _entry(lambda p, t: os.mkfifo(p / "pipe.png"), "pipe.png"),
    "fail_link_to_a_folder": _entry(lambda p, t: (p / "more").symlink_to(p.parent / "elsewhere"), "more"),
    "missing_folder": lambda p, t, r: ([f"data.folder={t / 'no'}"], [f"data.folder {t / 'no'} does not exist"]),
    "folder_is_a_file": _folder_is_a_file,
    "no_images": _no_images,
    "only_bad_photos": _only_bad,
    "split_list_file_missing": _missing_list,
    "split_list_entry_unknown": lambda p, t, proj: (["data.split.lists={train: [p0, p9]}"], ["data.split.lists.train", "'p9'"]),
    "duplicate_across_splits": _duplicate_across_splits,
    "output_names_clash": _clash,
    "out_dir_is_the_folder": _overlap(lambda p, t, r: p, lambda p, t, r: p),
    "out_dir_inside_the_folder": _overlap(lambda p, t, r: p, lambda p, t, r: p / "prepared"),
    "folder_inside_out_dir": _overlap(lambda p, t, r: t / "out" / "train" / "hr", lambda p, t, r: t / "out"),
    "folder_inside_models": _overlap(lambda p, t, r: r / "models" / "photos", lambda p, t, r: t / "out", "models"),
    "folder_is_the_project": _overlap(lambda p, t, r: r, lambda p, t, r: t / "out", "models"),
    "folder_links_into_reports": _overlap(lambda p, t, r: _linked(t / "via_link", r / "reports" / "pics"),
                                          lambda p, t, r: t / "out", "reports"),
}


@pytest.fixture(scope="module")
def prepare_main():
    """pipelines/prepare.py's main, run in this process (as DVC runs the script, without the start-up)."""
    return runpy.run_path(str(ROOT / "pipelines" / "prepare.py"), run_name="prepare_stage")["main"]


@pytest.fixture(scope="module")
def prepare_template(tmp_path_factory) -> Path:
    proj = tmp_path_factory.mktemp("proj")
    shutil.copytree(ROOT / "conf", proj / "conf")
    shutil.copy(ROOT / "dvc.yaml", proj / "dvc.yaml")
    write_params([], root=proj)
    return proj


@pytest.fixture
def prepare_project(prepare_template, tmp_path, monkeypatch) -> Path:
    """A gensr project (conf/, dvc.yaml, params.yaml) as the cwd: the stage script's repo root."""
    proj = tmp_path / "proj"
    shutil.copytree(prepare_template, proj)
    monkeypatch.chdir(proj)
    return proj


def _argv(photos: Path, out: Path, extra: list[str]) -> list[str]:
    return ["data.source=folder", f"data.folder={photos}", f"data.out_dir={out}", "data.min_side=16",
            "data.workers=1", *extra]


@pytest.mark.parametrize("case", sorted(MATRIX))
def test_refused_with_one_line_exit_2_and_the_photos_untouched(case, tmp_path, prepare_project, prepare_main,
                                                               capsys):
    photos = tmp_path / "photos"
    write_photos(photos, 4)
    (tmp_path / "elsewhere").mkdir()
    extra, expected = MATRIX[case](photos, tmp_path, prepare_project)
    before = snapshot(tmp_path)
    code = prepare_main(_argv(photos, tmp_path / "out", extra))
    err = capsys.readouterr().err
    errors = [ln for ln in err.splitlines() if ln.startswith("error:")]
    assert code == EXIT_USER_ERROR and len(errors) == 1 and "Traceback" not in err, err
    for text in expected:
        assert text in errors[0], (text, errors[0])
    # Nothing changed but prepare's own staging folder (a photo found bad mid-run, after it began):
    # not the photos, not the project, and nothing was published.
    after = {k: v for k, v in snapshot(tmp_path).items() if k != "." and not k.startswith(".out.partial")}
    assert after == {k: v for k, v in before.items() if k != "."}


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads files whatever their permissions")
def test_unreadable_photo_is_refused_by_name(tmp_path, prepare_project, prepare_main, capsys):
    photos = tmp_path / "photos"
    write_photos(photos, 4)
    (photos / "p1.png").chmod(0)
    assert prepare_main(_argv(photos, tmp_path / "out", ["data.on_bad_image=fail"])) == EXIT_USER_ERROR
    err = capsys.readouterr().err
    assert str(photos / "p1.png") in err and "permission denied" in err


def test_stage_script_process_exits_2_with_one_line(tmp_path, prepare_project):
    photos = tmp_path / "photos"
    write_photos(photos, 3)
    (photos / "cut.png").write_bytes(BAD["truncated_png"][1]())
    before = snapshot(photos)
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    proc = subprocess.run([sys.executable, str(ROOT / "pipelines" / "prepare.py"),
                           *_argv(photos, tmp_path / "out", ["data.on_bad_image=fail"])],
                          cwd=prepare_project, env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == EXIT_USER_ERROR, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and str(photos / "cut.png") in lines[0] and "Traceback" not in proc.stderr
    assert snapshot(photos) == before and not (tmp_path / "out").exists()
