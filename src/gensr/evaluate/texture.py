"""Texture / perceptual measures: how much real detail an SR output restores, without pretrained nets.

PSNR rewards the blurry mean of all plausible answers, so a GAN's sharper (and slightly less
faithful) output looks *worse* by PSNR alone. Three weight-free measures make detail visible in numbers:

* ``texture_distance`` — how far SR's local detail statistics are from HR's; 0 = HR's, lower is
  better. Y (BT.601, shaved like PSNR) is split into a 3-octave Laplacian pyramid (Burt & Adelson's
  5-tap binomial kernel). In every band and every 3x3 patch, the band-pass gradients are summarised
  by their covariance (the structure tensor: a zero-mean Gaussian model of the patch's detail, which
  says how strong it is and in which orientation). The score is the 2-Wasserstein distance between
  SR's and HR's patch Gaussians (closed form for 2x2 covariances), averaged over patches, divided by
  HR's mean patch gradient RMS, averaged over octaves. Missing detail (blur), detail HR does not have
  (noise in flat areas, JPEG blocking, ringing) and detail of the wrong orientation all raise it; the
  exact phase of the detail inside a patch does not, and the patch widens with the octave (3, 6, 12
  HR pixels). Alignment-free statistics (per-subband coefficient histograms or moments compared by
  Wasserstein-1 or KL) were measured first and rejected: on textured photos (fur, cells, star fields)
  bicubic plus noise of HR's high-frequency energy matched HR's marginals better than plain bicubic.

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
from scipy.ndimage import convolve, correlate1d, gaussian_filter, uniform_filter

from gensr.errors import BadInputError, MissingInputError
from gensr.metrics import shave, y_channel

HF_SIGMA = 1.0
GMSD_C = 170.0
_PREWITT_X = np.array([[1.0, 0.0, -1.0]] * 3) / 3.0
TEXTURE_OCTAVES = 3
_BINOMIAL = np.array([1.0, 4.0, 6.0, 4.0, 1.0], np.float32) / 16.0  # sigma 1: Burt & Adelson's kernel
# Half an 8-bit grey level: HR's detail amplitude is never taken below it, so a flat reference
# (nothing but quantisation) gives a finite score that still grows with any detail SR invents.
_AMPLITUDE_FLOOR = 0.5


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


def _laplacian_bands(y: np.ndarray, octaves: int) -> list[np.ndarray]:
    bands = []
    for _ in range(octaves):
        if min(y.shape) < 8:  # a smaller image has no further octave worth a statistic
            break
        low = correlate1d(correlate1d(y, _BINOMIAL, axis=0, mode="reflect"), _BINOMIAL, axis=1, mode="reflect")
        bands.append(y - low)
        y = low[::2, ::2]
    return bands


def _patch_covariance(band: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(gxx, gxy, gyy): the covariance of the band's central-difference gradients in each 3x3 patch."""
    gy, gx = np.gradient(band)
    return tuple(uniform_filter(g, size=3, mode="reflect") for g in (gx * gx, gx * gy, gy * gy))


def _bures(a: tuple, b: tuple) -> np.ndarray:
    """Per-pixel 2-Wasserstein distance between N(0, A) and N(0, B), A and B 2x2 covariances:
    W2^2 = tr A + tr B - 2 tr (A^1/2 B A^1/2)^1/2, and for 2x2 matrices
    tr (A^1/2 B A^1/2)^1/2 = sqrt(tr AB + 2 sqrt(det A det B))."""
    a11, a12, a22 = a
    b11, b12, b22 = b
    det = np.maximum(a11 * a22 - a12 * a12, 0) * np.maximum(b11 * b22 - b12 * b12, 0)
    cross = np.sqrt(np.maximum(a11 * b11 + 2 * a12 * b12 + a22 * b22 + 2 * np.sqrt(det), 0))
    w2 = np.sqrt(np.maximum(a11 + a22 + b11 + b22 - 2 * cross, 0))
    # float32 rounding leaves ~1e-4 where the patches are identical; W2(A, A) is exactly 0.
    same = (a11 == b11) & (a12 == b12) & (a22 == b22)
    return np.where(same, 0.0, w2)


def texture_distance(sr: np.ndarray, hr: np.ndarray, border: int = 0) -> float:
    """Distance of SR's local detail statistics from HR's (Y channel); 0 = HR's, lower is better."""
    if sr.shape != hr.shape:
        raise ValueError(f"shape mismatch: prediction {sr.shape} vs reference {hr.shape}")
    a = shave(y_channel(sr), border).astype(np.float32)
    b = shave(y_channel(hr), border).astype(np.float32)
    if min(a.shape) < 8:
        raise ValueError(f"image {sr.shape} too small for the texture distance")
    per_octave = []
    for band_sr, band_hr in zip(_laplacian_bands(a, TEXTURE_OCTAVES), _laplacian_bands(b, TEXTURE_OCTAVES)):
        cov_sr, cov_hr = _patch_covariance(band_sr), _patch_covariance(band_hr)
        amplitude = float(np.mean(np.sqrt(np.maximum(cov_hr[0] + cov_hr[2], 0)), dtype=np.float64))
        w2 = float(np.mean(_bures(cov_sr, cov_hr), dtype=np.float64))
        per_octave.append(w2 / max(amplitude, _AMPLITUDE_FLOOR))
    return float(np.mean(per_octave))


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
