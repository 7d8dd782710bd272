"""N seeded samples of one image from a sampling ONNX (`model.sample.onnx`), and their std map.

Sample k of an image is decoded from T * eps_k (the `vae`'s draw from its prior; VariationalSR:
z = mu + T * sigma * eps_k), eps_k ~ N(0, I) drawn over the whole image's latent grid by a
generator seeded with (seed, k): the same seed gives the same samples, whatever the other images
or the tiling. The tiler tells the model where each tile lies (`upscale_array(..., with_origin=True)`)
and the tile gets the slice of that noise at its latent offset (tile origins are multiples of 8,
the latent stride divides 8), so a tiled sample equals the untiled one within the upscaler's
blending tolerance.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from gensr.infer import session as runtime
from gensr.infer.batch import ImageOptions, upscale_file
from gensr.infer.files import MARK
from gensr.infer.tiling import upscale_array
from gensr.io import save_png

DEFAULT_STD_FULL_SCALE = 0.05  # std (in [0, 1] units) shown as white: 12.75 8-bit levels


class Sampler:
    """A sampling ONNX session (inputs lr, noise) plus its gensr metadata."""

    def __init__(self, path: str | Path, providers: list[str] | None = None, threads: int | None = None):
        self.session = runtime.make_session(path, providers, threads)
        self.meta = runtime.read_metadata(self.session, str(path), sampler=True)
        self.scale, self.channels, self.stride = self.meta["scale"], self.meta["channels"], self.meta["noise_stride"]
        self.providers = self.session.get_providers()

    def noise(self, h: int, w: int, seed: int, index: int, temperature: float) -> np.ndarray:
        """Sample `index`'s noise over the latent grid of an h x w image, scaled by the temperature."""
        eps = runtime.sample_noise(runtime.noise_shape(self.meta, 1, h, w), seed, index)
        return eps if temperature == 1.0 else np.multiply(eps, np.float32(temperature), out=eps)

    def __call__(self, lr_nchw: np.ndarray, noise: np.ndarray) -> np.ndarray:
        return runtime.run(self.session, lr_nchw, noise)

    def with_noise(self, noise: np.ndarray):
        """The tiler's model for one sample: each tile, at origin (y, x), gets `noise` at its latent offset."""
        s = self.stride

        def run(lr: np.ndarray, origin: tuple[int, int]) -> np.ndarray:
            (y, x), (th, tw) = origin, lr.shape[2:]
            if y % s or x % s:
                raise RuntimeError(f"tile origin {origin} is off the noise stride {s}")
            return self(lr, noise[:, :, y // s : y // s + -(-th // s), x // s : x // s + -(-tw // s)])

        return run


class _Moments:
    """Per-pixel running mean and variance (Welford: no catastrophic cancellation in float32)."""

    def __init__(self):
        self.n, self.mean, self.m2 = 0, None, None

    def add(self, x: np.ndarray) -> None:
        self.n += 1
        if self.mean is None:
            self.mean, self.m2 = x.copy(), np.zeros_like(x)
            return
        delta = x - self.mean
        self.mean += delta / self.n
        delta *= x - self.mean
        self.m2 += delta

    def std(self) -> np.ndarray:
        return np.sqrt(self.m2 / self.n)


@dataclass(frozen=True)
class SampleOptions:
    """The command-line --seed, --temperature, --std-full-scale, and how images are read and tiled."""

    seed: int = 0
    temperature: float = 1.0
    std_full_scale: float = DEFAULT_STD_FULL_SCALE
    image: ImageOptions = field(default_factory=ImageOptions)


def sample_file(
    sampler: Sampler, src: Path, dsts: list[Path], std_dst: Path | None, opts: SampleOptions
) -> float | None:
    """len(dsts) samples of `src` (sample k to dsts[k]) and, with `std_dst`, the std map: per-pixel
    population std over the samples, mean over colour channels, white = opts.std_full_scale.
    Returns the largest std (None without a map)."""
    moments = _Moments() if std_dst is not None else None
    tile, overlap = opts.image.tile, opts.image.overlap
    for k, dst in enumerate(dsts):
        def one_sample(img: np.ndarray, k: int = k) -> np.ndarray:
            noise = sampler.noise(img.shape[0], img.shape[1], opts.seed, k, opts.temperature)
            out = upscale_array(sampler.with_noise(noise), img, sampler.scale, tile, overlap, with_origin=True)
            if moments is not None:
                moments.add(out)
            return out

        upscale_file(sampler, src, dst, opts.image, upscale=one_sample)
    if moments is None:
        return None
    std = moments.std().mean(axis=2)
    save_png(std_dst, np.clip(std / opts.std_full_scale, 0.0, 1.0), MARK)
    return float(std.max())
