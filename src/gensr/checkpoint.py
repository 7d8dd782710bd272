"""The trained-model file (`models/<variant>/model.pt`): what training hands to evaluate and export.

It holds the generator's Hydra config (so the architecture is rebuilt by `_target_`), its EMA
weights, and metadata (variant, scale, channels, MLflow run id, data manifest hash, git commit).
Only tensors and plain containers are stored, so it loads with `weights_only=True`: opening a
model file can never run arbitrary pickled code.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch
from torch import nn

from gensr.archs.blocks import reparameterize
from gensr.errors import UserError
from gensr.io import atomic_write_bytes

FORMAT = "gensr-model/1"


class CheckpointMismatchError(UserError, ValueError):
    """A model file of another variant, scale or channel count than the one asked for."""


class BadModelFileError(UserError, ValueError):
    """A model file that is missing, empty, truncated, corrupt or not written by gensr."""


def save_model(
    path: str | Path, net_config: dict, state_dict: dict[str, torch.Tensor], meta: dict[str, Any]
) -> Path:
    """Write the model file atomically. `meta` must hold variant, scale and channels."""
    for key in ("variant", "scale", "channels"):
        if key not in meta:
            raise ValueError(f"model metadata needs '{key}'")
    payload = {
        "format": FORMAT,
        "net": net_config,
        "state_dict": {k: v.detach().cpu().contiguous() for k, v in state_dict.items()},
        "meta": dict(meta),
    }
    buf = io.BytesIO()
    torch.save(payload, buf)
    return atomic_write_bytes(path, buf.getvalue())


def load_model(
    path: str | Path,
    variant: str | None = None,
    scale: int | None = None,
    channels: int | None = None,
    map_location: str | torch.device = "cpu",
    fuse: bool = True,
) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild the generator from a model file; refuse one of another variant/scale/channels.

    `fuse`: re-parameterisable convs (`gensr.archs.blocks.RepConv3`) come back as the single conv
    they train to (the form evaluation, export and speed figures use); False keeps the training
    form, whose state dict initialises a fine-tune (`load_init`)."""
    from hydra.utils import instantiate

    path = Path(path)
    if not path.is_file():
        train = f"dvc repro train@{variant}" if variant else "dvc repro"
        raise BadModelFileError(f"{path}: no such model file; train that variant first ({train})")
    try:
        with warnings.catch_warnings():  # torch warns about foreign pickles before refusing them
            warnings.simplefilter("ignore")
            payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # pickle/zip errors: name the file, keep the cause (torch's own text runs on)
        why = (str(e).strip().splitlines() or [""])[0].split(". ")[0][:120]
        raise BadModelFileError(f"{path}: not a readable gensr model file, truncated or corrupt "
                                f"({type(e).__name__}{': ' + why if why else ''}); retrain it or restore it") from e
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise BadModelFileError(f"{path}: not a gensr model file (expected format {FORMAT}, as the train "
                                "stage writes)")
    meta = payload["meta"]
    for key, want in (("variant", variant), ("scale", scale), ("channels", channels)):
        if want is not None and meta.get(key) != want:
            raise CheckpointMismatchError(
                f"{path}: model file is for {key}={meta.get(key)!r}, but {key}={want!r} was asked for"
            )
    net = instantiate(payload["net"])
    try:
        net.load_state_dict(payload["state_dict"])
    except RuntimeError as e:  # the architecture code changed since this file was written
        raise CheckpointMismatchError(
            f"{path}: weights do not fit the current {payload['net'].get('_target_')} "
            f"architecture; retrain variant {meta.get('variant')!r} ({str(e).splitlines()[0]})"
        ) from e
    return (reparameterize(net) if fuse else net).eval(), meta


def _some(keys: list[str], n: int = 4) -> str:
    return ", ".join(keys[:n]) + (f" and {len(keys) - n} more" if len(keys) > n else "")


def _target(net: nn.Module) -> str:
    return f"{type(net).__module__}.{type(net).__name__}"


def load_init(net: nn.Module, path: str | Path, what: str, scale: int | None = None,
              channels: int | None = None) -> dict[str, Any]:
    """Initialise `net` (named `what` in errors) from the weights of a model file; its metadata.

    Strict, except for the parameters `net` declares new (`net.init_new_parameters()`, e.g. the VAE's
    posterior encoder and noise injection beside the autoencoder it starts from): those may be
    absent from the file and then keep their own initialisation. Anything else that does not fit is
    refused, naming the keys.
    """
    src, meta = load_model(path, scale=scale, channels=channels, fuse=False)
    have, want = src.state_dict(), net.state_dict()
    new = set(getattr(net, "init_new_parameters", tuple)())
    problems = [f"{label} {_some(keys)}" for label, keys in (
        ("missing", sorted(set(want) - set(have) - new)),
        ("unexpected", sorted(set(have) - set(want))),
        ("of another shape", sorted(k for k in set(have) & set(want) if have[k].shape != want[k].shape)),
    ) if keys]
    if problems:
        raise CheckpointMismatchError(
            f"{path}: its generator ({meta.get('variant')}: {_target(src)}) is not the architecture of {what} "
            f"(weights {'; '.join(problems)}); init_from needs a model file of the same architecture")
    net.load_state_dict(have, strict=False)  # only declared-new parameters can be left out
    return meta


def interpolate_weights(psnr: dict[str, torch.Tensor], gan: dict[str, torch.Tensor],
                        psnr_share: float) -> dict[str, torch.Tensor]:
    """ESRGAN's network interpolation (Wang et al. 2018): (1 - s) * gan + s * psnr, weight by weight.

    A GAN fine-tune and the PSNR model it started from stay close in weight space, so the blend
    moves smoothly between the two outputs: one knob for the perception-distortion trade-off,
    without the artefacts of blending their images. Integer buffers (counters) come from `gan`.
    Both must be the same architecture in its training form (`load_model(..., fuse=False)`): a
    re-parameterised branch fuses nonlinearly only through batch norm, which blends before fusing.
    """
    if not 0.0 <= psnr_share <= 1.0:
        raise ValueError(f"psnr_share must be in [0, 1], got {psnr_share}")
    if set(psnr) != set(gan) or any(psnr[k].shape != gan[k].shape for k in gan):
        raise CheckpointMismatchError("network interpolation needs two models of the same architecture")
    return {k: (torch.lerp(v, psnr[k].to(v), psnr_share) if v.is_floating_point() else v.clone())
            for k, v in gan.items()}
