"""DVC stage `train@<variant>`: `python pipelines/train.py variant=<name> [hydra overrides...]`.

Reads params.yaml (+ overrides), trains that variant and writes models/<v>/{model.pt,
metrics.json, history.csv} and checkpoints/<v>/{best,last}.ckpt. See gensr.training.run.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))


def main(argv: list[str]) -> int:
    from gensr.config import load_stage_config, tracking_uri
    from gensr.tracking import TrackingUnavailableError, check_reachable

    try:
        cfg = load_stage_config(argv)
        # Before importing torch/Lightning (seconds): an unreachable MLflow server fails at once.
        check_reachable(tracking_uri(), float(cfg.logger.get("connect_timeout_s", 20)))
    except (TrackingUnavailableError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 1

    from gensr.checkpoint import CheckpointMismatchError
    from gensr.io import BadImageError
    from gensr.training.base import NonFiniteLossError
    from gensr.training.run import train

    try:
        train(cfg)
    except (NonFiniteLossError, CheckpointMismatchError, TrackingUnavailableError, BadImageError,
            FileNotFoundError, ValueError) as e:
        print(f"error: {type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    except KeyboardInterrupt as e:
        print(f"interrupted: {e}", file=sys.stderr, flush=True)
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
