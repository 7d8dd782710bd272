"""Texture / perceptual measures: how much real detail an SR output restores, without pretrained nets.

PSNR rewards the blurry mean of all plausible answers, so a GAN's sharper (and slightly less
faithful) output looks *worse* by PSNR alone. Three weight-free measures make detail visible in numbers:

* ``texture_distance`` — how far SR's local detail statistics are from HR's; 0 = HR's, lower is
  better: per octave of a Laplacian pyramid and per 3x3 patch, the 2-Wasserstein distance between
  SR's and HR's structure tensors (strength and orientation of the detail), normalised by HR's
  detail amplitude (gensr.losses.structure, whose differentiable form is also a GAN loss). Missing
  detail (blur), detail HR does not have (noise in flat areas, JPEG blocking, ringing) and detail
  of the wrong orientation all raise it; the exact phase of the detail inside a patch does not.
  The patches are small, so detail of HR's exact local spectrum at a random phase scores no better
  than the PSNR model; wider ones credit it but take noise for fur (bench/texture_bound.py).
  Alignment-free statistics (per-subband coefficient histograms or moments compared by
  Wasserstein-1 or KL) were measured first and rejected: on textured photos (fur, cells, star
  fields) bicubic plus noise of HR's high-frequency energy matched HR's marginals better than
  plain bicubic.

* ``hf_ratio`` — high-frequency amplitude ratio: RMS of the high-pass band (Y minus its Gaussian
  blur, sigma 1 px) of SR divided by that of HR, on BT.601 Y with the same border shave as PSNR.
  1.0 = as much fine detail as the reference; bicubic sits well below (about 0.55 at x2 and 0.27
  at x4 on Set5); values above 1 mean over-sharpening or noise. It is alignment-free (a global
  statistic), so it says "how much detail", not "is it the right detail" — read it with GMSD.
* ``gmsd`` — Gradient Magnitude Similarity Deviation (Xue et al., IEEE TIP 2014): standard deviation
  of the per-pixel gradient-magnitude similarity map (Prewitt gradients after 2x2 average
  downsampling, c = 170 on the 0..255 scale, as in the authors' reference code). 0 = identical
  gradient structure; larger = more distorted edges/texture. Lower is better.

LPIPS (Zhang et al. 2018) needs pretrained weights that cannot be downloaded here. It is computed
only when ``evaluate.lpips_weights`` points at a local, self-contained LPIPS model: a TorchScript
file (``torch.jit.save``) or an ONNX file, taking two NCHW RGB tensors in [-1, 1] and returning the
distance. Otherwise it is skipped and the report says so.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy.ndimage import convolve, gaussian_filter

from gensr.errors import BadInputError, MissingInputError
from gensr.losses.structure import WINDOW, structure_distance
from gensr.metrics import shave, y_channel

HF_SIGMA = 1.0
GMSD_C = 170.0
_PREWITT_X = np.array([[1.0, 0.0, -1.0]] * 3) / 3.0


def high_pass(y: np.ndarray, sigma: float = HF_SIGMA) -> np.ndarray:
    """The fine-detail band of a 2-D image: the image minus its Gaussian blur."""
    y = np.asarray(y, np.float64)
    return y - gaussian_filter(y, sigma, mode="reflect")


def hf_ratio(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """RMS of SR's high-frequency band over HR's (Y channel); 1.0 = HR's amount of detail."""
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: prediction {sr.shape} vs reference {hr.shape}")
    e_sr = float(np.mean(high_pass(shave(y_channel(sr), border)) ** 2))
    e_hr = float(np.mean(high_pass(shave(y_channel(hr), border)) ** 2))
    if e_hr == 0.0:  # a flat reference: any detail in SR is spurious
        return 1.0 if e_sr == 0.0 else float("inf")
    return float(np.sqrt(e_sr / e_hr))


def hf_matched_noise(hr: np.ndarray, base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """`base` plus grey Gaussian noise whose high-frequency RMS on Y is HR's, unclipped: what
    hf_ratio takes for restored detail and the texture distance must not (tests, bench)."""
    noise = rng.normal(size=hr.shape[:2])
    target = np.sqrt(np.mean(high_pass(y_channel(hr)) ** 2))  # Y grey levels
    noise *= target / np.sqrt(np.mean(high_pass(noise * 219.0) ** 2))  # 219: Y's studio-range gain
    return base + noise[:, :, None]


def texture_distance(sr: np.ndarray, hr: np.ndarray, border: int = 0, window: int = WINDOW) -> float:
    """Distance of SR's local detail statistics from HR's (Y channel); 0 = HR's, lower is better.
    `window` (patch side, band pixels) is 3 everywhere but bench/texture_bound.py, which shows why."""
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: prediction {sr.shape} vs reference {hr.shape}")
    a = shave(y_channel(sr), border).astype(np.float64)
    b = shave(y_channel(hr), border).astype(np.float64)
    if min(a.shape) < 8:
        raise ValueError(f"image {sr.shape} too small for the texture distance")
    with torch.no_grad():
        d = structure_distance(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None], window=window)
    return float(d[0])


def _gradient_magnitude(y: np.ndarray) -> np.ndarray:
    # conv2(..., 'same') with zero padding, as in the authors' MATLAB code.
    gx = convolve(y, _PREWITT_X, mode="constant")
    gy = convolve(y, _PREWITT_X.T, mode="constant")
    return np.sqrt(gx**2 + gy**2)


def _average_downsample(y: np.ndarray) -> np.ndarray:
    h, w = y.shape[0] // 2 * 2, y.shape[1] // 2 * 2
    y = y[:h, :w]
    return (y[0::2, 0::2] + y[1::2, 0::2] + y[0::2, 1::2] + y[1::2, 1::2]) / 4.0


def gmsd(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """Gradient Magnitude Similarity Deviation on Y (0 = same gradients; lower is better)."""
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: prediction {sr.shape} vs reference {hr.shape}")
    a = _average_downsample(shave(y_channel(sr), border))
    b = _average_downsample(shave(y_channel(hr), border))
    if min(a.shape) < 3:
        raise ValueError(f"image {sr.shape} too small for GMSD")
    ga, gb = _gradient_magnitude(a), _gradient_magnitude(b)
    gms = (2.0 * ga * gb + GMSD_C) / (ga**2 + gb**2 + GMSD_C)
    return float(np.std(gms))


class LpipsModel:
    """A local LPIPS network (TorchScript or ONNX). Call with two HxWxC float [0, 1] images."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not self.path.is_file():
            raise MissingInputError(
                f"evaluate.lpips_weights: {self.path} does not exist (set it to null to skip LPIPS)"
            )
        self._onnx = self.path.suffix.lower() == ".onnx"
        try:
            if self._onnx:
                from gensr.infer.session import make_session

                self._session = make_session(self.path, ["CPUExecutionProvider"])
                self._inputs = [i.name for i in self._session.get_inputs()]
                if len(self._inputs) != 2:
                    raise ValueError(f"expected 2 inputs, found {len(self._inputs)}")
            else:
                import torch

                self._module = torch.jit.load(str(self.path), map_location="cpu").eval()
        except FileNotFoundError:
            raise
        except Exception as e:
            raise BadInputError(
                f"{self.path}: not a usable LPIPS model (TorchScript, or ONNX with two image "
                f"inputs): {e}"
            ) from e

    @staticmethod
    def _to_nchw(img: np.ndarray) -> np.ndarray:
        img = np.asarray(img)
        img = img.astype(np.float32) / 255.0 if img.dtype == np.uint8 else img.astype(np.float32)
        if img.ndim == 2:
            img = img[:, :, None]
        if img.shape[2] == 1:  # LPIPS backbones are RGB networks
            img = np.repeat(img, 3, axis=2)
        return np.ascontiguousarray((img.transpose(2, 0, 1)[None] * 2.0 - 1.0).astype(np.float32))

    def __call__(self, sr: np.ndarray, hr: np.ndarray) -> float:
        a, b = self._to_nchw(sr), self._to_nchw(hr)
        if self._onnx:
            out = self._session.run(None, {self._inputs[0]: a, self._inputs[1]: b})[0]
            return float(np.mean(out))
        import torch

        with torch.no_grad():
            out = self._module(torch.from_numpy(a), torch.from_numpy(b))
        return float(out.float().mean())


def lpips_note(path: str | None) -> str:
    """What the report says about LPIPS."""
    if path:
        return f"LPIPS computed with the local model {path} (lower is better)."
    return (
        "LPIPS skipped: it needs pretrained network weights, which are not downloaded at run time. "
        "Set evaluate.lpips_weights to a local TorchScript/ONNX LPIPS model to enable it."
    )
