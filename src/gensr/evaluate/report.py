"""`reports/index.html`: one self-contained page (leaderboard, charts, comparison pictures).

Every picture is inlined as a base64 PNG data URI and the CSS sits in the page, so the file
renders the same offline, attached to an MLflow run, or mailed on its own: no CDN, no scripts.
"""
from __future__ import annotations

import base64
from dataclasses import dataclass
from html import escape
from pathlib import Path

from gensr.evaluate.results import BASELINE
from gensr.io import atomic_write_text

_CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Helvetica,Arial,sans-serif;margin:24px;color:#1d1d1f;background:#fff}
h1{font-size:24px;margin:0 0 4px} h2{font-size:19px;margin:28px 0 8px;border-bottom:1px solid #ddd;padding-bottom:4px}
h3{font-size:16px;margin:18px 0 6px} .sub{color:#555;margin:0 0 16px}
table{border-collapse:collapse;font-size:14px;margin:8px 0} th,td{border:1px solid #ccc;padding:4px 8px;text-align:right;white-space:nowrap}
th{background:#eef2f7} td.name,th.name{text-align:left} tr.baseline td{background:#f5f5f5;color:#555}
tr.champion td{background:#e7f6e7;font-weight:600} tr.perceptual td{background:#e8effa;font-weight:600}
th.group{text-align:center} .pos{color:#1a7f37} .neg{color:#b3261e}
figure{margin:10px 0 18px} figcaption{font-size:13px;color:#444;margin-top:2px} img{max-width:100%;height:auto}
.notes li{margin:3px 0;font-size:14px} code{background:#f3f3f3;padding:0 3px}
"""


def data_uri(path: Path) -> str:
    return "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")


def _img(path: Path, alt: str) -> str:
    return f'<img src="{data_uri(path)}" alt="{escape(alt)}">'


def _fmt(v, digits: int = 2, signed: bool = False) -> str:
    if v is None:
        return "–"
    s = f"{v:+.{digits}f}" if signed else f"{v:.{digits}f}"
    if signed:
        cls = "pos" if v > 0 else "neg" if v < 0 else ""
        return f'<span class="{cls}">{s}</span>'
    return s


def _params(n: int) -> str:
    if not n:
        return "–"
    if n < 1000:
        return str(n)
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}K"


# Perception columns, per set: (summary key, header, digits). LPIPS only when it was computed.
_PERCEPTION = [("texture_distance", "texture distance ↓", 3), ("hf_ratio", "HF detail ratio", 3),
               ("gmsd", "GMSD ↓", 4), ("lpips", "LPIPS ↓", 4)]


def leaderboard(summary: dict, split_id: str, champion: str, run_ids: dict[str, str],
                perceptual: str | None = None) -> str:
    """Fidelity (PSNR/SSIM) and perception (texture, detail, gradients) column groups, per set."""
    sets = list(summary)
    test = summary[split_id]
    methods = sorted(test, key=lambda m: -(test[m].get("psnr_y") or 0.0))
    shown = [q for q in _PERCEPTION if q[0] != "lpips" or any("lpips" in e for ms in summary.values()
                                                             for e in ms.values())]
    group = ['<th class="name" rowspan="2">method</th>', '<th rowspan="2">params</th>',
             f'<th class="group" colspan="{2 * len(sets)}">Fidelity</th>',
             f'<th class="group" colspan="{len(shown) * len(sets)}">Perception</th>',
             f'<th rowspan="2">{escape(split_id)}<br>ms / megapixel</th>',
             '<th class="name" rowspan="2">MLflow run</th>']
    head = [f"<th>{escape(s)}<br>PSNR-Y / SSIM-Y</th><th>{escape(s)}<br>Δ PSNR vs bicubic</th>" for s in sets]
    head += [f"<th>{escape(s)}<br>{label}</th>" for s in sets for _, label, _ in shown]
    body = []
    for m in methods:
        cls = "baseline" if m == BASELINE else "champion" if m == champion else "perceptual" if m == perceptual else ""
        marks = (" ★" if m == champion else "") + (" ◆" if m == perceptual else "")
        cells = [f'<td class="name">{escape(m)}{marks}</td>', f"<td>{_params(test[m]['params'])}</td>"]
        for s in sets:
            se = summary[s].get(m, {})
            cells.append(f"<td>{_fmt(se.get('psnr_y'))} / {_fmt(se.get('ssim_y'), 4)}</td>")
            cells.append(f"<td>{'–' if m == BASELINE else _fmt(se.get('delta_psnr_y'), 2, True)}</td>")
        cells += [f"<td>{_fmt(summary[s].get(m, {}).get(key), digits)}</td>" for s in sets for key, _, digits in shown]
        cells += [f"<td>{_fmt(test[m].get('ms_per_mp'), 1)}</td>",
                  f'<td class="name"><code>{escape(run_ids.get(m, "–")[:12])}</code></td>']
        body.append(f'<tr class="{cls}">' + "".join(cells) + "</tr>")
    return ("<table><thead><tr>" + "".join(group) + "</tr><tr>" + "".join(head) + "</tr></thead><tbody>\n"
            + "\n".join(body) + "</tbody></table>")


@dataclass(frozen=True)
class Report:
    """What the page shows: the summary (set -> method -> figures) and champions, the MLflow run of
    each variant, the comparison pictures (set -> [(image, png, caption)]), charts ([(title, png)])
    and notes (one list item each)."""

    summary: dict
    split_id: str
    champ: dict
    scale: int
    run_ids: dict[str, str]
    comparisons: dict[str, list[tuple[str, Path, str]]]
    charts: list[tuple[str, Path]]
    notes: list[str]


def write_report(path: Path, report: Report) -> Path:
    """Write the page."""
    summary, split_id, champ, scale = report.summary, report.split_id, report.champ, report.scale
    n_imgs = {s: next(iter(ms.values()))["n_images"] for s, ms in summary.items()}
    perc = champ["perceptual"]
    perc_line = (f"perceptual champion (lowest texture distance among variants ≥ {perc['min_psnr_y']:.2f} dB): "
                 f"<b>{escape(perc['variant'])}</b> ◆" if perc["qualified"] else
                 f"perceptual champion: <b>{escape(perc['variant'])}</b> ◆ — {escape(perc['fallback'])}")
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>gensr evaluation report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>gensr evaluation report</h1>",
        f'<p class="sub">x{scale} super-resolution · sets: '
        + ", ".join(f"{escape(s)} ({n} image{'s' if n != 1 else ''})" for s, n in n_imgs.items())
        + f" · fidelity champion (best PSNR-Y on {escape(split_id)}): <b>{escape(champ['variant'])}</b> ★"
        f" at {champ['psnr_y']:.2f} dB · {perc_line}</p>",
        "<h2>Leaderboard</h2>",
        leaderboard(summary, split_id, champ["variant"], report.run_ids, perc["variant"]),
        '<p class="sub">Fidelity: PSNR/SSIM on the BT.601 Y channel, scale pixels shaved from each border, '
        "mean over images. Perception: texture distance = how far the local detail statistics are from "
        "HR's (0 = HR's; blur, noise and blocking all raise it); HF detail ratio = high-frequency "
        "amplitude relative to HR (1 = as much fine detail as the reference, below 1 = blurrier; noise "
        "raises it too); GMSD = gradient-structure distortion (0 = identical). ↓ = lower is better. "
        "★ fidelity champion, ◆ perceptual champion.</p>",
    ]
    for title, png in report.charts:
        parts += [f"<h2>{escape(title)}</h2>", f"<figure>{_img(png, title)}</figure>"]
    parts.append("<h2>Side-by-side comparisons</h2>")
    parts.append('<p class="sub">Same zoomed crop (the HR region with the most fine detail, '
                 "outlined on the thumbnail) for every method; labels give PSNR-Y on the whole image. "
                 "A variational model's crop is followed by its uncertainty map (\"std\"): the per-pixel "
                 "standard deviation of its seeded samples, labelled with the range it is scaled to.</p>")
    for set_id, items in report.comparisons.items():
        parts.append(f"<h3>{escape(set_id)}</h3>")
        for image, png, caption in items:
            parts.append(f"<figure>{_img(png, image)}<figcaption>{escape(caption)}</figcaption></figure>")
    parts.append('<h2>Notes</h2><ul class="notes">')
    parts += [f"<li>{escape(n)}</li>" for n in report.notes]
    parts.append("</ul></body></html>")
    return atomic_write_text(path, "\n".join(parts) + "\n")
