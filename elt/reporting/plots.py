"""PNG plots of a report (matplotlib, Agg backend: no display needed).

- ``devi_hist.png``: histogram of the max force deviation of every explored frame, per iteration,
  with the trust levels drawn;
- ``ratios.png``: accurate / candidate / failed fractions versus iteration;
- ``dataset_rmse.png``: data-set size and training/validation force RMSE versus iteration;
- ``devi_vs_error.png``: max force deviation versus the true max force error of the labeled frames
  (prediction before retraining against the label), with the Spearman rank correlation.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from elt.data.modeldevi import MAX_DEVI_F, read_model_devi

PLOTS = ("devi_hist.png", "ratios.png", "dataset_rmse.png", "devi_vs_error.png")


def _plt():
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _integer_x(ax, xs=()) -> None:
    """Whole-number iteration ticks; one iteration gets one tick, not fractions around it."""
    from matplotlib.ticker import FixedLocator, MaxNLocator

    xs = sorted(set(xs))
    if len(xs) == 1:
        ax.xaxis.set_major_locator(FixedLocator(xs))
        ax.set_xlim(xs[0] - 1, xs[0] + 1)
    else:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))


def _no_data(ax, text: str = "no data yet") -> None:
    ax.text(0.5, 0.5, text, ha="center", va="center", transform=ax.transAxes, color="0.4")
    ax.set_xticks([])
    ax.set_yticks([])


def _rows(report: dict) -> list[dict]:
    return report["iterations"] + ([report["current"]] if report.get("current") else [])


def iteration_deviations(row: dict) -> np.ndarray:
    """Max force deviations of every frame of an iteration, from its walkers' model_devi.out files."""
    vals = []
    for w in row["walker_list"]:
        p = w.get("model_devi_file")
        if p and Path(p).is_file():
            vals.append(read_model_devi(Path(p))[:, MAX_DEVI_F])
    return np.concatenate(vals) if vals else np.zeros(0)


def plot_devi_hist(report: dict, out: Path, plt) -> None:
    rows = _rows(report)
    fig, ax = plt.subplots(figsize=(7, 4.2))
    data = [(r, iteration_deviations(r)) for r in rows]
    finite = np.concatenate([d[np.isfinite(d)] for _, d in data] + [np.zeros(0)])
    levels = sorted({(r["trust_lo"], r["trust_hi"]) for r in rows if r.get("trust_lo") is not None})
    if len(finite):
        # log bins from a tenth of the lowest trust level (frames below it, such as the unperturbed
        # start frame, are counted in the first bin) to the largest deviation
        floor = 0.1 * min([lv[0] for lv in levels] or [max(float(np.quantile(finite, 0.05)), 1e-6)])
        top = max([finite.max()] + [1.2 * lv[1] for lv in levels])
        bins = np.logspace(np.log10(floor), np.log10(top) + 0.02, 41)
        cmap = plt.get_cmap("viridis")
        for k, (r, d) in enumerate(data):
            d = np.clip(d[np.isfinite(d)], bins[0], bins[-1])
            if len(d):
                ax.hist(d, bins=bins, histtype="step", lw=1.5, color=cmap(k / max(1, len(data) - 1)),
                        label=f"iter {r['iteration']}" + ("" if r["status"] == "finished" else " (partial)"))
        ax.set_xscale("log")
        from matplotlib.ticker import LogLocator, NullFormatter

        ax.xaxis.set_minor_locator(LogLocator(subs=np.arange(2, 10)))
        ax.xaxis.set_minor_formatter(NullFormatter())  # minor labels collide on a log axis
    else:
        _no_data(ax)
    for i, (lo_, hi_) in enumerate(levels if len(finite) else []):
        ax.axvline(lo_, color="tab:green", ls="--", lw=1, label="trust_lo" if i == 0 else None)
        ax.axvline(hi_, color="tab:red", ls="--", lw=1, label="trust_hi" if i == 0 else None)
    ax.set_xlabel("max force deviation (eV/Å)")
    ax.set_ylabel("frames")
    ax.set_title("model deviation of explored frames")
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_ratios(report: dict, out: Path, plt) -> None:
    rows = [r for r in _rows(report) if r.get("accurate_ratio") is not None]
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["iteration"] for r in rows]
    for key, color in (("accurate", "tab:green"), ("candidate", "tab:orange"), ("failed", "tab:red")):
        ax.plot(x, [r[f"{key}_ratio"] for r in rows], "o-", color=color, label=key)
    ax.set_ylim(-0.02, 1.02)
    if not rows:
        _no_data(ax)
    thr = [(r["iteration"], r["accurate_threshold"]) for r in rows if r.get("accurate_threshold") is not None]
    if thr:  # the stage's threshold of the accurate ratio (a stage is done at it, the run converged)
        ax.step([t[0] for t in thr], [t[1] for t in thr], where="mid", color="tab:green", ls=":", lw=1.2,
                label="accurate threshold")
    for prev, r in zip(rows, rows[1:]):  # stage changes
        if r.get("stage") != prev.get("stage"):
            ax.axvline(r["iteration"] - 0.5, color="0.5", ls="--", lw=0.8)
            ax.text(r["iteration"] - 0.45, 0.5, r.get("stage_name") or f"stage {r.get('stage')}",
                    rotation=90, fontsize=7, color="0.4", va="center")
    _integer_x(ax, x)
    ax.set_xlabel("iteration")
    ax.set_ylabel("fraction of explored frames")
    ax.set_title("accurate / candidate / failed")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_dataset_rmse(report: dict, out: Path, plt) -> None:
    rows = _rows(report)
    fig, ax = plt.subplots(figsize=(6, 4))
    x = [r["iteration"] for r in rows if r.get("dataset_size") is not None]
    ax.plot(x, [r["dataset_size"] for r in rows if r.get("dataset_size") is not None], "s-", color="tab:blue",
            label="data set (frames)")
    if not x:
        _no_data(ax)
    _integer_x(ax, x)
    ax.set_xlabel("iteration")
    ax.set_ylabel("labeled frames", color="tab:blue")
    ax2 = ax.twinx()
    for split, style in (("train", "o-"), ("valid", "o--")):
        pts = [(r["iteration"], (r["rmse"].get(split) or {}).get("f")) for r in rows]
        pts = [p for p in pts if p[1] is not None]
        if pts:
            ax2.plot([p[0] for p in pts], [p[1] for p in pts], style, color="tab:purple", label=f"force RMSE {split}")
    ax2.set_ylabel("force RMSE (eV/Å)", color="tab:purple")
    handles = ax.get_legend_handles_labels()[0] + ax2.get_legend_handles_labels()[0]
    ax.legend(handles=handles, fontsize=8, loc="upper left")
    ax.set_title("data set and training error")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def plot_devi_vs_error(report: dict, out: Path, plt) -> None:
    pts = [x for r in report["iterations"] for x in r["labeled"]
           if x.get("max_devi_f") is not None and x.get("force_error_max") is not None]
    fig, ax = plt.subplots(figsize=(5.5, 5))
    c = report["correlation"]
    if pts:
        d = np.array([p["max_devi_f"] for p in pts])
        e = np.array([p["force_error_max"] for p in pts])
        sc = ax.scatter(d, e, c=[p["iteration"] for p in pts], cmap="viridis", s=18)
        if len({p["iteration"] for p in pts}) > 1:
            from matplotlib.ticker import MaxNLocator

            fig.colorbar(sc, ax=ax, label="iteration", ticks=MaxNLocator(integer=True))
        lim = [min(d.min(), e.min()) * 0.8, max(d.max(), e.max()) * 1.25]
        if lim[0] > 0 and lim[1] / lim[0] > 20:  # log axes only where they help
            ax.set_xscale("log")
            ax.set_yscale("log")
        else:
            lim = [0.0, lim[1]]
            ax.set_xlim(lim)
            ax.set_ylim(lim)
        ax.plot(lim, lim, "k:", lw=1, label="y = x")
        last = next((r for r in reversed(report["iterations"]) if r.get("trust_lo") is not None), None)
        if last is not None:  # the levels in force at the end, on the deviation axis
            ax.axvline(last["trust_lo"], color="tab:green", ls="--", lw=1, label="trust_lo (last)")
            ax.axvline(last["trust_hi"], color="tab:red", ls="--", lw=1, label="trust_hi (last)")
        ax.legend(fontsize=8, loc="upper left")
    else:
        ax.text(0.5, 0.5, "no labeled frames with a stored prediction", ha="center", transform=ax.transAxes)
    rho = "n/a" if c["spearman"] is None else f"{c['spearman']:+.3f}"
    u = c.get("unrestricted") or {"n": 0}
    note = ("candidates only: a range-restricted sample" if not u["n"] else
            f"random frames only: ρ = {u['spearman']:+.3f} (n = {u['n']})" if u.get("spearman") is not None else "")
    ax.set_title(f"deviation vs true error: Spearman ρ = {rho} (n = {c['n']})" + (f"\n{note}" if note else ""),
                 fontsize=10)
    ax.set_xlabel("max force deviation (eV/Å)")
    ax.set_ylabel("true max force error (eV/Å)")
    fig.tight_layout()
    fig.savefig(out, dpi=110)
    plt.close(fig)


def write_plots(report: dict, out_dir: Path) -> list[Path]:
    """Write the four PNGs into ``out_dir``; returns their paths."""
    plt = _plt()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    fns = (plot_devi_hist, plot_ratios, plot_dataset_rmse, plot_devi_vs_error)
    paths = []
    for name, fn in zip(PLOTS, fns):
        p = out_dir / name
        fn(report, p, plt)
        paths.append(p)
    return paths
