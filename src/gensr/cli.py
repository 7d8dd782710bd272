"""`gensr` console script. Sub-commands import lazily: `gensr upscale` must never import torch."""
from __future__ import annotations

import argparse
import sys

from gensr.errors import UserError, entry_point

# What `pip install 'gensr[train]'` adds to the core install (numpy, Pillow, onnxruntime).
TRAIN_MODULES = {"torch", "lightning", "hydra", "omegaconf", "mlflow", "dvc", "onnx", "onnxscript", "scipy",
                 "skimage", "matplotlib", "tqdm"}


def _params(argv: list[str]) -> int:
    try:
        from gensr.config import write_params

        out = write_params(argv)  # refuses an invalid config (gensr.schema); params.yaml is then untouched
    except ModuleNotFoundError as e:  # a production install: only the core is there
        if (e.name or "").split(".")[0] not in TRAIN_MODULES:
            raise
        raise UserError(f"`gensr params` needs the training extra ({e.name} is not installed): "
                        "pip install 'gensr[train]'") from e
    print(f"wrote {out} from conf/" + (f" with {' '.join(argv)}" if argv else ""))
    return 0


def _upscale(argv: list[str]) -> int:
    from gensr.upscale import main as upscale_main  # torch-free: numpy, Pillow, onnxruntime

    return upscale_main(argv)


def _sample(argv: list[str]) -> int:
    from gensr.sample import main as sample_main  # torch-free, like upscale

    return sample_main(argv)


COMMANDS = {
    "params": (_params, "compose conf/ (+ Hydra overrides) into params.yaml, as `dvc exp run` does"),
    "upscale": (_upscale, "upscale images with an exported ONNX model (no torch needed)"),
    "sample": (_sample, "N seeded samples (+ std map) per image from a variational model's model.sample.onnx"),
}


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help") or argv[0] not in COMMANDS:
        parser = argparse.ArgumentParser(prog="gensr", description=__doc__)
        sub = parser.add_subparsers(dest="command", required=True)
        for name, (_, help_text) in COMMANDS.items():
            sub.add_parser(name, help=help_text)
        parser.parse_args(argv)  # prints help / the error and exits
        return 2
    func, _ = COMMANDS[argv[0]]
    return entry_point(func)(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
