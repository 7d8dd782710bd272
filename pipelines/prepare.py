"""DVC stage `prepare`: photos -> degraded LR/HR pairs in data/prepared (see gensr.data.prepare).

    python pipelines/prepare.py [hydra.overrides ...]   e.g.  degradation.scale=4
"""
import logging
import sys
from pathlib import Path

# This checkout's code first, also when another checkout's gensr is installed (editable) in the venv.
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gensr.config import load_stage_config, repo_root  # noqa: E402
from gensr.data.prepare import prepare  # noqa: E402
from gensr.io import BadImageError  # noqa: E402


def main(argv: list[str]) -> int:
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = load_stage_config(argv)
    try:
        prepare(cfg, repo_root())
    except (BadImageError, FileNotFoundError) as e:  # bad input: the message says it all
        logging.getLogger("gensr.prepare").error("%s", e)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
