"""HR -> LR degradations, built from `conf/degradation/*.yaml` with Hydra's `_target_`.

A degradation is called as `lr, params = degradation(hr, rng)`: `hr` is the modcropped HxWxC
uint8 photo (C = 1 or 3), `lr` is uint8 of exactly (H/scale, W/scale, C), and `params` is a
JSON-ready record of every random value drawn (written to the manifest). All randomness comes
from `rng`, which prepare derives from (degradation.seed, the image's sha256) with `image_rng`:
same config + seed + photo => byte-identical LR, whatever worker handles it and in what order.
"""
from __future__ import annotations

import math
from typing import Any

import numpy as np

from gensr.data import ops
from gensr.data.resize import METHODS, imresize
from gensr.io import to_uint8


def image_rng(seed: int, identity: str) -> np.random.Generator:
    """The generator for one photo: seeded by the config seed and the photo's sha256 (hex)."""
    return np.random.default_rng(np.random.SeedSequence([int(seed), int(identity, 16)]))


def _check_scale(scale: int) -> int:
    if int(scale) not in (2, 3, 4):
        raise ValueError(f"degradation.scale must be 2, 3 or 4, got {scale}")
    return int(scale)


def _check_divisible(hr: np.ndarray, scale: int) -> tuple[int, int]:
    h, w = hr.shape[:2]
    if h % scale or w % scale:
        raise ValueError(f"HR {h}x{w} is not modcropped to a multiple of {scale}")
    return h // scale, w // scale


class BicubicDegradation:
    """MATLAB `imresize(hr, 1/scale, 'bicubic')` (antialiased): the SR benchmarks' LR."""

    kind = "bicubic"

    def __init__(self, scale: int, seed: int = 0, kind: str = "bicubic"):
        if kind != self.kind:
            raise ValueError(f"{type(self).__name__} got kind={kind!r}; select the config group instead")
        self.scale, self.seed = _check_scale(scale), int(seed)

    def __call__(self, hr: np.ndarray, rng: np.random.Generator | None = None) -> tuple[np.ndarray, dict]:
        size = _check_divisible(hr, self.scale)  # (rng: nothing is random here)
        lr = imresize(np.asarray(hr, dtype=np.uint8), size=size, method="bicubic")
        return lr, {"kind": self.kind, "scale": self.scale, "method": "matlab_imresize_bicubic"}


def _range(cfg: dict, key: str) -> tuple[float, float]:
    lo, hi = (float(v) for v in cfg[key])
    if lo > hi:
        raise ValueError(f"range {key}={cfg[key]} has min > max")
    return lo, hi


def _uniform(rng: np.random.Generator, cfg: dict, key: str) -> float:
    lo, hi = _range(cfg, key)
    return float(rng.uniform(lo, hi))


def _choice(rng: np.random.Generator, options: list) -> Any:
    return options[int(rng.integers(len(options)))]


class RealisticDegradation:
    """Real-ESRGAN's second-order chain: (blur -> resize -> noise -> JPEG) once or twice, then a
    resize to exactly HR/scale (the last JPEG before or after it). Every draw is recorded."""

    kind = "realistic"

    def __init__(
        self,
        scale: int,
        first: dict,
        second: dict,
        final: dict,
        second_order_prob: float = 1.0,
        seed: int = 0,
        kind: str = "realistic",
    ):
        if kind != self.kind:
            raise ValueError(f"{type(self).__name__} got kind={kind!r}; select the config group instead")
        self.scale, self.seed = _check_scale(scale), int(seed)
        self.first, self.second, self.final = dict(first), dict(second), dict(final)
        self.second_order_prob = float(second_order_prob)
        for name, stage in (("first", self.first), ("second", self.second)):
            self._validate(name, stage)
        for m in self.final["methods"]:
            if m not in METHODS:
                raise ValueError(f"final.methods: unknown resize method {m!r}")

    @staticmethod
    def _validate(name: str, cfg: dict) -> None:
        b, r, n, j = cfg["blur"], cfg["resize"], cfg["noise"], cfg["jpeg"]
        lo, hi = (int(v) for v in b["kernel_size"])
        if lo % 2 == 0 or hi % 2 == 0 or lo < 3 or lo > hi:
            raise ValueError(f"{name}.blur.kernel_size must be odd sizes [min, max] >= 3, got {b['kernel_size']}")
        _range(b, "sigma")
        probs = [float(r["probs"][k]) for k in ("up", "down", "keep")]
        if min(probs) < 0 or not math.isclose(sum(probs), 1.0, abs_tol=1e-6):
            raise ValueError(f"{name}.resize.probs must be >= 0 and sum to 1, got {r['probs']}")
        if r["relative_to"] not in ("input", "target"):
            raise ValueError(f"{name}.resize.relative_to must be input or target")
        for m in r["methods"]:
            if m not in METHODS:
                raise ValueError(f"{name}.resize.methods: unknown method {m!r}")
        for key in ("gaussian_sigma", "poisson_scale"):
            _range(n, key)
        q_lo, q_hi = _range(j, "quality")
        if not 1 <= q_lo <= q_hi <= 100:
            raise ValueError(f"{name}.jpeg.quality must lie in [1, 100], got {j['quality']}")

    def __call__(self, hr: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        target = _check_divisible(hr, self.scale)
        x = np.asarray(hr, dtype=np.float64) / 255.0
        passes = 2 if rng.random() < self.second_order_prob else 1
        record: dict[str, Any] = {"kind": self.kind, "scale": self.scale, "passes": []}
        for i in range(passes):
            cfg = self.first if i == 0 else self.second
            step: dict[str, Any] = {}
            x, step["blur"] = self._blur(x, cfg["blur"], rng)
            x, step["resize"] = self._resize(x, cfg["resize"], target, rng)
            x, step["noise"] = self._noise(x, cfg["noise"], rng)
            if i < passes - 1:
                x, step["jpeg"] = self._jpeg(x, cfg["jpeg"], rng)
            else:
                # Real-ESRGAN randomises whether the last JPEG sees the final size or not.
                jpeg_last = bool(rng.random() < float(self.final["jpeg_after_resize_prob"]))
                if not jpeg_last:
                    x, step["jpeg"] = self._jpeg(x, cfg["jpeg"], rng)
                method = _choice(rng, list(self.final["methods"]))
                x = np.clip(imresize(x, size=target, method=method), 0.0, 1.0)
                record["final"] = {"method": method, "size": list(target), "jpeg_after_resize": jpeg_last}
                if jpeg_last:
                    x, step["jpeg"] = self._jpeg(x, cfg["jpeg"], rng)
            record["passes"].append(step)
        return to_uint8(x), record

    @staticmethod
    def _blur(x: np.ndarray, cfg: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        if rng.random() >= float(cfg["prob"]):
            return x, {"applied": False}
        lo, hi = (int(v) for v in cfg["kernel_size"])
        size = int(_choice(rng, list(range(lo, hi + 1, 2))))
        isotropic = bool(rng.random() < float(cfg["isotropic_prob"]))
        sx = _uniform(rng, cfg, "sigma")
        sy = sx if isotropic else _uniform(rng, cfg, "sigma")
        theta = 0.0 if isotropic else float(rng.uniform(-math.pi, math.pi))
        kernel = ops.gaussian_kernel(size, sx, sy, theta)
        out = np.clip(ops.blur(x, kernel, isotropic), 0.0, 1.0)
        return out, {
            "applied": True, "type": "isotropic" if isotropic else "anisotropic",
            "kernel_size": size, "sigma_x": sx, "sigma_y": sy, "theta": theta,
        }

    @staticmethod
    def _resize(
        x: np.ndarray, cfg: dict, target: tuple[int, int], rng: np.random.Generator
    ) -> tuple[np.ndarray, dict]:
        names = ["up", "down", "keep"]
        direction = names[int(rng.choice(3, p=[float(cfg["probs"][k]) for k in names]))]
        factor = 1.0 if direction == "keep" else _uniform(rng, cfg, direction)
        method = _choice(rng, list(cfg["methods"]))
        base = x.shape[:2] if cfg["relative_to"] == "input" else target
        size = (max(1, round(base[0] * factor)), max(1, round(base[1] * factor)))
        if size != x.shape[:2]:
            x = np.clip(imresize(x, size=size, method=method), 0.0, 1.0)
        return x, {"direction": direction, "factor": factor, "method": method, "size": list(size)}

    @staticmethod
    def _noise(x: np.ndarray, cfg: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        if rng.random() >= float(cfg["prob"]):
            return x, {"applied": False}
        gray = bool(rng.random() < float(cfg["gray_prob"]))
        if rng.random() < float(cfg["gaussian_prob"]):
            sigma = _uniform(rng, cfg, "gaussian_sigma")
            out = ops.gaussian_noise(x, sigma, gray, rng)
            rec = {"applied": True, "type": "gaussian", "sigma": sigma, "gray": gray}
        else:
            amount = _uniform(rng, cfg, "poisson_scale")
            out = ops.poisson_noise(x, amount, gray, rng)
            rec = {"applied": True, "type": "poisson", "scale": amount, "gray": gray}
        return np.clip(out, 0.0, 1.0), rec

    @staticmethod
    def _jpeg(x: np.ndarray, cfg: dict, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        if rng.random() >= float(cfg["prob"]):
            return x, {"applied": False}
        lo, hi = (int(v) for v in cfg["quality"])
        quality = int(rng.integers(lo, hi + 1))
        return ops.jpeg(x, quality), {"applied": True, "quality": quality}
