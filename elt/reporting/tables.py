"""The report as tables: cells as text (shared by the terminal and the HTML page), rich rendering."""

from __future__ import annotations

from typing import Optional

from elt.engine.plan import stop_text

COLUMNS = ("iter", "stage", "T (K)", "frames", "accurate", "candidate", "failed", "trust lo/hi (eV/Å)",
           "labels +ok/-failed", "failure reasons", "data set", "force RMSE train/valid (eV/Å)",
           "energy RMSE train/valid (meV/atom)")


def _pct(x: Optional[float]) -> str:
    return "-" if x is None else f"{100 * x:.1f}%"


def _num(x: Optional[float], fmt: str, scale: float = 1.0) -> str:
    return "-" if x is None else format(scale * x, fmt)


def _pair(rmse: dict, key: str, fmt: str, scale: float = 1.0) -> str:
    tr = (rmse.get("train") or {}).get(key)
    va = (rmse.get("valid") or {}).get(key)
    return f"{_num(tr, fmt, scale)} / {_num(va, fmt, scale)}"


def row_cells(r: dict) -> list[str]:
    it = f"{r['iteration']}" + ("" if r["status"] == "finished" else f" ({r['status']}: {r['phase']})")
    name = r.get("stage_name") or ""
    stage = "-" if r.get("stage") is None else (f"{r['stage']}" if name in ("", f"stage {r['stage']}") else f"{r['stage']} {name}")
    temps = ", ".join(f"{t:g}" for t in r.get("temperatures") or []) or "-"
    if r.get("pressures"):
        temps += " @ " + ", ".join(f"{p:g}" for p in r["pressures"]) + " GPa"
    trust = "-" if r.get("trust_lo") is None else f"{r['trust_lo']:.3g} / {r['trust_hi']:.3g}" + (
        "" if not r.get("levels") else " auto" + ("" if r.get("calibrated", True) else " (uncalibrated)"))
    labels = f"+{r.get('labels_ok') or 0} / -{r.get('labels_failed') or 0}"
    reasons = ", ".join(f"{k} ×{v}" for k, v in sorted((r.get("failure_reasons") or {}).items())) or "-"
    return [it, stage, temps, str(r.get("frames") if r.get("frames") is not None else "-"),
            _pct(r.get("accurate_ratio")), _pct(r.get("candidate_ratio")), _pct(r.get("failed_ratio")),
            trust, labels, reasons, str(r["dataset_size"]) if r.get("dataset_size") is not None else "-",
            _pair(r.get("rmse") or {}, "f", ".4f"), _pair(r.get("rmse") or {}, "e", ".2f", 1000.0)]


def summary_rows(report: dict) -> list[list[str]]:
    rows = [row_cells(r) for r in report["iterations"]]
    if report.get("current"):
        rows.append(row_cells(report["current"]))
    return rows


def headline(report: dict) -> list[str]:
    lines = [f"run {report['run_dir']}: {report['state']}"
             + (f" ({report['final']['status']})" if report.get("final") else "")
             + (f" ({report['finishing']['phase']}; the loop has ended: {stop_text(report['finishing']['status'])})"
                if report.get("finishing") else "")
             + (f"; driver {report['driver']}" if report.get("driver") else "")]
    c = report["correlation"]
    if c["n"]:
        rho = "n/a (fewer than 3 frames)" if c["spearman"] is None else f"{c['spearman']:+.3f}"
        lines.append(f"deviation vs true force error of {c['n']} labeled frames: Spearman rank correlation {rho}")
    if c.get("without_prediction"):
        lines.append(f"{c['without_prediction']} labeled frames carry no stored prediction (older elt): no true error")
    fin = report.get("final")
    if fin and fin.get("rmse"):
        lines.append(f"final ensemble: force RMSE train/valid {_pair(fin['rmse'], 'f', '.4f')} eV/Å, "
                     f"energy RMSE {_pair(fin['rmse'], 'e', '.2f', 1000.0)} meV/atom")
    t = report.get("test")
    if t and t.get("rmse_f") is not None:
        lines.append(f"test on {t['frames']} fresh frames: force RMSE {t['rmse_f']:.4f} eV/Å, "
                     f"energy RMSE {1000 * t['rmse_e']:.2f} meV/atom")
    return lines


WALKER_COLUMNS = ("walker", "frames", "accurate", "candidate", "failed", "max devi f (eV/Å)", "candidates",
                  "labeled", "labels failed", "stop", "model_devi.out")


def walker_rows(r: dict) -> list[list[str]]:
    out = []
    for w in r["walker_list"]:
        # classes by the iteration's trust levels (an adaptive lo is set after the walkers ran)
        c = ((w.get("file") or {}).get("classes")) or w
        out.append([str(w.get("walker")), str(w.get("frames", "-")), str(c.get("accurate", "-")),
                    str(c.get("candidate", "-")), str(c.get("failed", "-")), _num(w.get("max_devi_f_max"), ".4f"),
                    str(w.get("candidates", "-")), str(w.get("labeled", "-")), str(w.get("labels_failed", "-")),
                    str(w.get("stop_reason") or "-"),
                    (w.get("model_devi_file") or "-") + ("" if w.get("file") else " (missing)")])
    return out


FAILURE_COLUMNS = ("frame", "reason", "message", "task directory")


def failure_rows(r: dict) -> list[list[str]]:
    return [[str(f.get("frame_id")), str(f.get("reason")), str(f.get("message") or "")[:300], str(f.get("task_dir"))]
            for f in r["failures"]]


LABELED_COLUMNS = ("frame", "walker", "max devi f (eV/Å)", "true max force error (eV/Å)", "force RMSE (eV/Å)",
                   "energy error (meV/atom)")


def labeled_rows(r: dict) -> list[list[str]]:
    return [[str(x["frame_id"]), str(x["walker"]), _num(x.get("max_devi_f"), ".4f"), _num(x.get("force_error_max"), ".4f"),
             _num(x.get("force_rmse"), ".4f"), _num(x.get("energy_error_per_atom"), ".2f", 1000.0)]
            for x in r["labeled"]]


def detail_lines(r: dict) -> list[str]:
    lines = [f"iteration {r['iteration']} ({r['status']}" + (f", phase {r['phase']}" if r.get("phase") else "") + ")"]
    if r.get("seconds"):
        lines.append("time: " + ", ".join(f"{k} {v:.1f} s" for k, v in r["seconds"].items()))
    if r.get("stop_reasons"):
        lines.append("walker stops: " + ", ".join(f"{k} ×{v}" for k, v in r["stop_reasons"].items()))
    for wf in r.get("walker_failures") or []:
        lines.append(f"walker {wf.get('walker')} failed: {wf.get('message')}")
    d = r.get("devi")
    if d:
        lines.append(f"model_devi.out of {d['walkers_with_file']} walker(s): {d['frames']} frames, max force deviation "
                     f"median {_num(d.get('median'), '.4f')}, 90% {_num(d.get('p90'), '.4f')}, "
                     f"max {_num(d.get('max'), '.4f')} eV/Å")
    if r.get("data_file"):
        lines.append(f"labeled frames: {r['data_file']}")
    return lines


# ---------------------------------------------------------------- rich
def _table(title: str, columns, rows):
    from rich.table import Table

    t = Table(title=title, title_justify="left", show_lines=False)
    for c in columns:
        t.add_column(c, overflow="fold")
    for row in rows:
        t.add_row(*row)
    return t


def print_summary(console, report: dict) -> None:
    for line in headline(report):
        console.print(line, markup=False, soft_wrap=True)
    console.print(_table("iterations", COLUMNS, summary_rows(report)))
    if not report["iterations"] and not report.get("current"):
        console.print("no iteration has finished tasks yet", markup=False, soft_wrap=True)


def print_detail(console, r: dict) -> None:
    for line in detail_lines(r):
        console.print(line, markup=False, soft_wrap=True)
    console.print(_table("iteration", COLUMNS, [row_cells(r)]))
    console.print(_table("walkers", WALKER_COLUMNS, walker_rows(r)))
    if r["failures"]:
        console.print(_table("failed labels", FAILURE_COLUMNS, failure_rows(r)))
    if r["labeled"]:
        console.print(_table("labeled frames", LABELED_COLUMNS, labeled_rows(r)))
