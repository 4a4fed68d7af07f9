"""Files a report writes next to the tables: per-iteration aggregated model_devi files, the PNGs,
the HTML page."""

from __future__ import annotations

from pathlib import Path

from elt.reporting.modeldevi import write_aggregate


def write_model_devi(report: dict, out_dir: Path) -> list[Path]:
    """``OUT/model_devi/iter_NNN.out``: every walker's model_devi.out of an iteration in one file
    (DP-GEN columns; a ``# walker ID: PATH`` comment before each block)."""
    out = []
    rows = report["iterations"] + ([report["current"]] if report.get("current") else [])
    for r in rows:
        blocks = []
        for w in r["walker_list"]:
            p = Path(w["model_devi_file"]) if w.get("model_devi_file") else None
            if p is not None and p.is_file():
                blocks.append((w["walker"], p))
        if blocks:
            dst = Path(out_dir) / "model_devi" / f"iter_{r['iteration']:03d}.out"
            write_aggregate(blocks, dst)
            out.append(dst)
    return out


def write_outputs(report: dict, out_dir: Path, plots: bool = True, html: bool = False) -> dict[str, list[str]]:
    from elt.errors import SetupError

    out_dir = Path(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        written: dict[str, list[str]] = {"model_devi": [str(p) for p in write_model_devi(report, out_dir)]}
        pngs = []
        if plots or html:
            from elt.reporting.plots import write_plots

            pngs = write_plots(report, out_dir)
            written["plots"] = [str(p) for p in pngs]
        if html:
            from elt.reporting.html import render_html

            page = out_dir / "report.html"
            page.write_text(render_html(report, pngs), encoding="utf-8")
            written["html"] = [str(page)]
    except OSError as e:
        raise SetupError(f"cannot write the report files into {out_dir}: {e}",
                         hint="give another folder with --out DIR") from None
    return written
