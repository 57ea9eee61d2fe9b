"""The tables printed for a protocol: a report as the papers print it, and its title."""

from __future__ import annotations

from tabulate import tabulate


def report_table(report, tablefmt: str = "github") -> str:
    """The protocol's table (:func:`protocol_table`) and, when the evaluation computed them, the
    verification figures per probe set beneath it."""
    main = protocol_table(report, tablefmt)
    verification = verification_table(report, tablefmt)
    return main + ("\n\nverification (%):\n" + verification if verification else "")


def verification_table(report, tablefmt: str = "github") -> str:
    """TAR at each FAR and EER (%) per probe set; '' when the evaluation did not compute them."""
    sets = {k: t["verification"] for k, t in report.tables.items()
            if k != "settings" and isinstance(t, dict) and isinstance(t.get("verification"), dict)}
    if not sets:
        return ""
    fars = list(next(iter(sets.values()))["tar_at_far"])
    rows = [[name] + [t["tar_at_far"].get(f) for f in fars] + [t["eer"], t["genuine_pairs"], t["impostor_pairs"]]
            for name, t in sets.items()]
    return tabulate(rows, headers=["probes"] + fars + ["EER", "genuine pairs", "impostor pairs"], tablefmt=tablefmt,
                    floatfmt=".2f", missingval="n/a")


def protocol_table(report, tablefmt: str = "github") -> str:
    """The report as the papers print it. View-matrix protocols: rank-1 per probe view (mean over
    the gallery views) for every probe set, plus the mean (the CASIA-B table layout). Retrieval
    protocols averaged over probe views: one row per probe set and metric. Otherwise one row per
    probe set with its metrics."""
    tables = report.tables
    sets = [k for k in tables if isinstance(tables[k], dict) and "per_probe_view" in tables[k]]
    if sets and "views" in tables[sets[0]]:
        views = list(tables[sets[0]]["views"])
        rows = []
        for name in sets:
            per_view = tables[name]["per_probe_view"]
            mean = report.metrics.get(f"{name}/rank1", report.metrics.get("rank1") if len(sets) == 1 else None)
            rows.append([name] + [per_view.get(v) for v in views] + [mean])
            valid = tables[name].get("valid")
            if valid:  # probes without a gallery of their subject left out (OU-MVLP's second convention)
                vmean = report.metrics.get(f"{name}/rank1_valid",
                                           report.metrics.get("rank1_valid") if len(sets) == 1 else None)
                rows.append([f"{name} (valid)"] + [valid["per_probe_view"].get(v) for v in views] + [vmean])
        return tabulate(rows, headers=["probe"] + views + ["mean"], tablefmt=tablefmt, floatfmt=".2f")
    if sets:
        views = list(tables[sets[0]]["per_probe_view"])
        rows = []
        for name in sets:
            per_view = tables[name]["per_probe_view"]
            for metric, mean in tables[name]["values"].items():
                rows.append([name, metric] + [per_view[v].get(metric) for v in views] + [mean])
        return tabulate(rows, headers=["probe", "metric"] + views + ["mean"], tablefmt=tablefmt, floatfmt=".2f")
    sets = [k for k in tables if isinstance(tables[k], dict) and "values" in tables[k]]
    if not sets:
        return ""
    if "num_gallery_subjects" in tables[sets[0]]:  # identification (HID): scored only with a truth file
        t = tables[sets[0]]
        rank1 = report.metrics.get("rank1", "no truth file: predictions only")
        return tabulate([[sets[0], rank1, t["num_probes"], t["num_gallery"], t["num_gallery_subjects"]]],
                        headers=["probes", "rank1", "n", "gallery sequences", "gallery subjects"],
                        tablefmt=tablefmt, floatfmt=".2f")
    names = list(tables[sets[0]]["values"])
    rows = [[name] + [tables[name]["values"].get(m) for m in names] + [tables[name]["num_probes"]] for name in sets]
    return tabulate(rows, headers=["probes"] + names + ["n"], tablefmt=tablefmt, floatfmt=".2f")


def intervals(tables: dict) -> dict[str, dict]:
    """Each probe set's rank-1 interval (``tables[name]["rank1_interval"]``, and for the OU-MVLP
    "valid" convention ``"<name> (valid)"``), in table order."""
    out: dict[str, dict] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            continue
        if "rank1_interval" in table:
            out[name] = table["rank1_interval"]
        valid = table.get("valid")
        if isinstance(valid, dict) and "rank1_interval" in valid:
            out[f"{name} (valid)"] = valid["rank1_interval"]
    return out


def interval_line(tables: dict) -> str | None:
    """One line: how sure each probe set's rank-1 is (the bootstrap interval and the probes it
    rests on); None when the report has none (no truth file, a record written before intervals)."""
    found = intervals(tables)
    if not found:
        return None
    first = next(iter(found.values()))
    parts = [f"{name} {iv['low']:.2f}-{iv['high']:.2f} (+/-{iv['half_width']:.2f}, {iv['num_probes']:,} probes)"
             for name, iv in found.items()]
    return (f"rank-1 {100 * first['level']:.0f}% interval ({first['method']}, {first['replicates']:,} replicates): "
            + "; ".join(parts))


def describe_metrics(protocol) -> str:
    """A short title for the printed table: what the numbers are."""
    ev = protocol.evaluation
    if ev.kind == "view_matrix":
        return "rank-1 (%), " + ("identical view excluded" if ev.exclude_identical_view else "all view pairs")
    if ev.kind == "identification":
        return "rank-1 (%): each probe's nearest gallery subject against the truth file"
    names = [f"rank-{k}" for k in ev.ranks] + (["mAP"] if ev.map else []) + (["mINP"] if ev.minp else [])
    return ", ".join(names) + " (%)"


def print_run(run, report, protocol, out_dir, echo) -> None:
    """What ``gaitbench run`` prints at the end: the title (method, protocol, what the numbers are,
    SYNTHETIC, stages), the protocol's table, the submission file, where the record went."""
    echo("")
    echo(f"{run.method} [{run.variant}] on {protocol.describe()} - {describe_metrics(protocol)}"
         f"{' - SYNTHETIC DATA' if run.synthetic else ''}"
         f"{'; stages: ' + ', '.join(s.name for s in run.stages) if run.stages else ''}")
    echo(report_table(report))
    line = interval_line(report.tables)
    if line:
        echo(line)
    if run.submission and run.submission.get("path"):
        scored = run.submission.get("truth") is not None
        echo(f"submission written to {run.submission['path']}" + ("" if scored else
             " (no truth file: the probes' identities are unknown, so there is no score; --truth FILE scores it)"))
    echo(f"\nrun written to {out_dir}/result.json ({run.timings['total_s']:.0f} s)")
