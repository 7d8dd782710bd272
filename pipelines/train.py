"""DVC stage `train@<variant>`: `python pipelines/train.py variant=<name> [hydra overrides...]`.

Reads params.yaml (+ overrides), trains that variant and writes models/<v>/{model.pt,
metrics.json, history.csv} and checkpoints/<v>/{best,last}.ckpt. See gensr.training.run.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from gensr.errors import entry_point  # noqa: E402


@entry_point
def main(argv: list[str]) -> int:
    from gensr.config import load_stage_config, tracking_uri
    from gensr.schema import require_variant
    from gensr.tracking import check_store

    cfg = load_stage_config(argv)
    require_variant(cfg)
    # Before importing torch/Lightning (seconds): a bad config or tracking store fails at once.
    check_store(tracking_uri(), float(cfg.logger.get("connect_timeout_s", 20)))
    from gensr.training.run import train

    train(cfg)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
