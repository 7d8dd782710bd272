"""DVC stage `prepare`: photos -> degraded LR/HR pairs in data/prepared (see gensr.data.prepare).

    python pipelines/prepare.py [hydra.overrides ...]   e.g.  degradation.scale=4
"""
import logging
import sys
from pathlib import Path

# This checkout's code first, also when another checkout's gensr is installed (editable) in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gensr.errors import entry_point  # noqa: E402


@entry_point
def main(argv: list[str]) -> int:
    from gensr.config import load_stage_config, repo_root

    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_stage_config(argv)  # validated before the data code is imported
    from gensr.data.prepare import prepare

    prepare(cfg, repo_root())
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
