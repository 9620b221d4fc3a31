"""``mfrs report PIPELINE``: one self-contained HTML file of a pipeline's results, built on ``mne.Report``.

It reads the finished stores only (no stage is recomputed) and holds the headline
findings in words and numbers, the figures of :mod:`mfrs.figures`, the planted truth
beside what was recovered (the demo), and what ran (provenance of every store, wall
time per stage from the run log). The file is written to a temporary name and renamed,
so a failed report never leaves a half-written one; a report whose inputs have not
changed is not rebuilt.
"""

from __future__ import annotations

import html
import json
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mfrs.errors import ConfigError, StoreError

__all__ = ["build_report", "ReportResult", "record_run", "report_path", "check_stores", "REQUIRED_STORES"]

log = logging.getLogger(__name__)

#: Stores a report reads (sources only for the brain RDM at the peak).
REQUIRED_STORES = ("rsa", "model_rdms", "sources")
_FORMAT = 2  # bump when the report's content changes, so cached reports are rebuilt


@dataclass
class ReportResult:
    """What :func:`build_report` made."""

    path: Path
    headline: list[str]
    rebuilt: bool
    n_figures: int = 0
    truth: list[dict[str, Any]] = field(default_factory=list)


def report_path(catalog: Any, pipeline: str) -> Path:
    """``<data root>/reports/<pipeline>.html``."""
    return Path(catalog.root) / "reports" / f"{Path(pipeline).stem}.html"


def _run_log(catalog: Any, pipeline: str) -> Path:
    return Path(catalog.root) / "reports" / f"{Path(pipeline).stem}-runs.jsonl"


def record_run(catalog: Any, pipeline: str, timings: dict[str, float], *, cluster: str | None = None) -> None:
    """Append one run's wall time per stage to the pipeline's run log (read by the report)."""
    path = _run_log(catalog, pipeline)
    path.parent.mkdir(parents=True, exist_ok=True)
    record = {"finished": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "cluster": cluster,
              "seconds": {k: round(float(v), 2) for k, v in timings.items()}}
    with open(path, "a") as fh:
        fh.write(json.dumps(record) + "\n")


def check_stores(catalog: Any, names: tuple[str, ...] = REQUIRED_STORES, *, pipeline: str = "PIPELINE"
                 ) -> dict[str, Any]:
    """Open every store a report reads; StoreError naming each missing or incomplete store and its units.

    Returns
    -------
    dict
        Entry name -> :class:`mfrs.store.ZarrStore`.
    """
    from mfrs.store import ZarrStore

    stores, problems = {}, []
    for name in names:
        path = Path(catalog.path(name))
        if not (path / "zarr.json").exists():
            problems.append(f"store {name!r} ({path}) does not exist")
            continue
        store = ZarrStore.open(path, entry_name=name)
        status = store.status()
        if status["missing"]:
            shown = ", ".join(status["missing"][:6]) + (" ..." if len(status["missing"]) > 6 else "")
            problems.append(f"store {name!r} ({path}) is incomplete: {status['complete']} of {status['units']} "
                            f"units complete; missing: {shown}")
        stores[name] = store
    if problems:
        raise StoreError(f"report {pipeline}: cannot report on unfinished results; nothing was written.\n  "
                         + "\n  ".join(problems) + f"\nRun `mfrs run {pipeline}` to finish them "
                         f"(`mfrs status {pipeline}` lists what is missing).")
    return stores


def _cache_key(stores: dict[str, Any], truth: Any, pipeline_outputs: dict[str, Any], run_log: Path) -> str:
    from mfrs import __version__
    from mfrs.provenance import fingerprint, git_revision

    marks = {n: sorted(p.name for p in (s.path / ".mfrs-complete").glob("*.json")) for n, s in stores.items()}
    return fingerprint({"format": _FORMAT, "version": __version__, "git": git_revision(),
                        "stores": {n: s.fingerprint for n, s in stores.items()}, "marks": marks,
                        "outputs": pipeline_outputs, "truth": fingerprint(truth) if truth else None,
                        "runs": run_log.read_text() if run_log.exists() else ""})


def _table(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        if isinstance(v, (list, tuple)):
            return ", ".join(map(str, v))
        return "" if v is None else str(v)

    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(fmt(r.get(k)))}</td>" for k, _ in columns) + "</tr>"
                   for r in rows)
    return (f'<div style="overflow-x: auto"><table class="table table-sm table-striped"><thead><tr>{head}</tr>'
            f'</thead><tbody>{body}</tbody></table></div>')


def _provenance_html(outputs: dict[str, dict[str, Any]], runs: list[dict[str, Any]]) -> str:
    parts = []
    rows = [{"entry": n, "stage": p.get("stage"), "created": p.get("created"), "git": p.get("git_revision"),
             "cluster": json.dumps(p.get("cluster")) if p.get("cluster") else "", "fingerprint": p.get("fingerprint")}
            for n, p in outputs.items()]
    parts.append("<h4>Stores</h4>" + _table(rows, [("entry", "store"), ("stage", "stage"), ("created", "created"),
                                                    ("git", "git revision"), ("cluster", "cluster"),
                                                    ("fingerprint", "fingerprint")]))
    if runs:
        stages = list(dict.fromkeys(k for r in runs for k in r["seconds"]))
        rrows = [{"finished": r["finished"], "cluster": r.get("cluster"),
                  **{s: r["seconds"].get(s) for s in stages}} for r in runs[-5:]]
        parts.append("<h4>Wall time per stage (s), last runs that computed something</h4>"
                     + _table(rrows, [("finished", "finished"), ("cluster", "cluster")] + [(s, s) for s in stages]))
    else:
        parts.append("<p>No run log: the stores were made before run logging, or by another tool.</p>")
    first = next(iter(outputs.values()), {})
    versions = first.get("versions", {})
    parts.append("<h4>Versions</h4><p>" + html.escape(", ".join(f"{k} {v}" for k, v in versions.items())) + "</p>")
    for n, p in outputs.items():
        params = json.dumps(p.get("parameters", {}), indent=1, sort_keys=True)
        parts.append(f"<details><summary>parameters of {html.escape(n)} ({html.escape(str(p.get('stage')))})"
                     f"</summary><pre>{html.escape(params)}</pre></details>")
    return "\n".join(parts)


def _figures(catalog: Any, ds: Any, rows: list[dict[str, Any]], truth: Any) -> list[tuple[str, str, Any, str]]:
    """``(section, title, figure, caption)`` of the report, in order."""
    import numpy as np

    from mfrs import figures
    from mfrs.results import bilateral, brain_rdm, open_model_rdms, peaks
    from mfrs.results.stores import flat_layers

    signal = str(ds["signal"].values[0])
    one = ds.sel(signal=[signal])
    pooled = bilateral(one)
    out = []
    alpha = 0.05
    pvar = "p_fwe" if "p_fwe" in ds else ("p" if "p" in ds else "")
    pk_all = peaks(pooled.sel(signal=signal, category="all"))
    out.append(("Summary", "Peak latency and r per region", figures.latency_summary(pk_all, truth=truth),
                "Peak of r over time and every layer (all networks), regions pooled over hemispheres; "
                + ("open circles: planted latencies of the simulation." if truth else "")))
    for region in [str(r) for r in pooled["region"].values]:
        out.append((f"Region {region}", f"{region}: r over time",
                    figures.time_course(pooled, region, signal=signal, alpha=alpha, p=pvar or "p_fwe"),
                    f"Best layer of each network over time; grey band: noise ceiling; ticks: {pvar} <= {alpha} "
                    "(Bonferroni over the two hemispheres)."))
        out.append((f"Region {region}", f"{region}: r along layer depth",
                    figures.layer_profile(pooled, region, signal=signal),
                    "Best r over time of every layer; grey band: noise ceiling at the region's peak time."))
        if pooled.sizes.get("category", 1) > 1:
            out.append((f"Region {region}", f"{region}: per category", figures.category_panels(pooled, region,
                                                                                                signal=signal),
                        "Each category's own best layer and noise ceiling."))
    out.append(("Models", "Trained vs untrained", figures.trained_vs_untrained(pooled, signal=signal),
                "Best r over layers at each time: trained (solid) and untrained (dashed) weights."))
    anat = catalog.entry("anatomy")
    out.append(("Cortex", "Peak r on the cortex",
                figures.cortex_map(one, anat.path, subject=anat.freesurfer.subject,
                                   parcellation=anat.freesurfer.parcellation, signal=signal),
                "Peak r over time and layers of each analysed region, on the inflated fsaverage surface."))
    # the brain RDM at the strongest trained peak, beside its best layer's RDM
    hemis = [r for r in rows if r["trained"] and np.isfinite(r["peak_r"])]
    if hemis:
        from mfrs.results.headline import headline

        per_hemi = [r for r in headline(ds, signal=signal, pool=False) if r["trained"] and np.isfinite(r["peak_r"])]
        top = max(per_hemi, key=lambda r: r["peak_r"])
        brain = brain_rdm(region=top["region"], time=top["peak_time"], signal=signal, catalog=catalog)
        models = flat_layers(open_model_rdms(catalog))
        model = models["rdm"].sel(layer=top["best_layer"]).load()
        model.name = top["best_layer"]
        out.append(("RDMs", f"RDMs at the peak of {top['region']}",
                    figures.rdm_comparison(brain, model, titles=(
                        f"brain: {top['region']} at {top['peak_time'] * 1e3:.0f} ms (group)", top["best_layer"])),
                    "Dissimilarity percentiles, stimuli ordered by category."))
    return out


def _set_figures(outputs: dict[str, Any], catalog: Any, truth: Any, signal: str) -> list[tuple[str, str, Any, str]]:
    """Figures of the sensor and searchlight stores the pipeline wrote (none when it has no such stage)."""
    from mfrs import figures
    from mfrs.store import ZarrStore

    out = []
    if "rsa_sensors" in outputs:
        ds = ZarrStore.open(catalog.path("rsa_sensors"), entry_name="rsa_sensors").dataset()
        ds = ds.sel(subject=["group"], signal=[signal] if signal in ds["signal"].values else ds["signal"].values[:1])
        out.append(("Sensors", "Peak r per sensor neighbourhood", figures.sensor_topomaps(ds.load()),
                    "Peak r over time and every layer of the subject-mean RDM of each sensor and its neighbours "
                    "(MNE's Neuromag-306 adjacency): magnetometers and the two planar gradiometer orientations; "
                    "titles: the same for every channel of a type taken together."))
    if "searchlight" in outputs:
        ds = ZarrStore.open(catalog.path("searchlight"), entry_name="searchlight").dataset()
        ds = ds.sel(subject=["group"], signal=[signal] if signal in ds["signal"].values else ds["signal"].values[:1])
        planted = sorted({str(e["region"]) for e in (truth or {}).get("effects", []) if "region" in e})
        radius = ds.attrs.get("radius_mm", "?")
        out.append(("Searchlight", "Peak r of cortical searchlight patches",
                    figures.searchlight_map(ds.load(), highlight=planted),
                    f"Peak r over time and every layer of the subject-mean RDM of each {radius} mm patch, at the "
                    "patch centre on the white surface" + (f"; ringed: centres in the planted regions "
                                                            f"({', '.join(planted)})." if planted else ".")))
    return out


def build_report(pipeline: str, *, catalog: Any = None, force: bool = False) -> ReportResult:
    """Write the HTML report of ``pipeline``'s results under the data root.

    Parameters
    ----------
    pipeline : str
        Pipeline name or file (its stages name the stores shown under "what ran").
    catalog : Catalog, optional
        Default: the catalog found by :func:`mfrs.catalog.find_catalog_file`.
    force : bool
        Rebuild even if nothing changed since the last report.

    Returns
    -------
    ReportResult

    Raises
    ------
    StoreError
        A store the report reads is missing or incomplete (nothing is written).
    """
    from mfrs.catalog import load_catalog
    from mfrs.pipeline import load_pipeline, stage_config, stage_module
    from mfrs.results.headline import headline, headline_sentences, read_truth, truth_vs_recovered
    from mfrs.store import ZarrStore

    catalog = catalog if catalog is not None else load_catalog()
    pipe = load_pipeline(pipeline)
    if "similarity" not in pipe.stages:
        raise ConfigError(f"report {pipeline}: the pipeline has no similarity stage, so there are no results "
                          f"to report (stages: {', '.join(pipe.stages)})")
    stores = check_stores(catalog, pipeline=Path(pipeline).stem)
    outputs = {}
    for name in pipe.stages:
        module = stage_module(name)
        for entry in module.outputs(stage_config(module, pipe), catalog):
            e = catalog.entry(entry)
            if e.kind == "zarr" and (Path(e.uri) / "zarr.json").exists():
                outputs[entry] = ZarrStore.open(e.uri, entry_name=entry).provenance
    truth = read_truth(catalog)
    path = report_path(catalog, pipeline)
    runs_path = _run_log(catalog, pipeline)
    key = _cache_key(stores, truth, {k: v.get("fingerprint") for k, v in outputs.items()}, runs_path)
    sidecar = path.with_suffix(".json")
    if not force and path.exists() and sidecar.exists():
        cached = json.loads(sidecar.read_text())
        if cached.get("key") == key:
            log.info("report: %s is up to date (stores unchanged since it was written); not rebuilt", path)
            return ReportResult(path, cached["headline"], False, cached.get("n_figures", 0), cached.get("truth", []))
    t0 = time.perf_counter()
    import mne

    from mfrs.results import open_rsa, p_variables

    ds = open_rsa(catalog)
    signal = str(ds["signal"].values[0])
    ds = ds.sel(subject=["group"], signal=[signal]).load()  # what the report reads, read once
    rows = headline(ds, signal=signal)
    sentences = headline_sentences(rows)
    compared = truth_vs_recovered(truth, rows) if truth else []
    report = mne.Report(title=f"mfrs: {Path(pipeline).stem}", verbose="error")
    intro = (f"<p>Pipeline <b>{html.escape(Path(pipeline).stem)}</b>: {html.escape(pipe.description)}. "
             f"Signal <b>{html.escape(signal)}</b>, all stimuli, regions pooled over hemispheres, r of the "
             "subject-mean ('group') brain RDM.</p><ul>"
             + "".join(f"<li>{html.escape(s)}</li>" for s in sentences) + "</ul>")
    cols = [("region", "region"), ("network", "network"), ("weights", "weights"), ("best_layer", "best layer"),
            ("depth", "depth"), ("peak_time", "peak time (s)"), ("peak_r", "peak r"),
            ("noise_ceiling_lower", "ceiling lower"), ("noise_ceiling_upper", "ceiling upper")]
    cols += [(k, k) for k in rows[0] if k == "p" or k.startswith("p_")] if rows else []
    families = "".join(f"<li><b>{html.escape(k)}</b>: {html.escape(str(ds[k].attrs.get('description', '')))}; "
                       f"family: {html.escape(str(ds[k].attrs.get('family', 'not recorded')))}</li>"
                       for k in p_variables(ds))
    notes = f"<p>p-values (regions pooled: Bonferroni over the two hemispheres):</p><ul>{families}</ul>" if families else ""
    report.add_html(intro + _table(rows, cols) + notes, title="Headline findings", section="Findings")
    if compared:
        report.add_html("<p>The simulation planted these effects; recovered: the peak of the region's best "
                        "trained layer (pooled hemispheres).</p>" + _table(compared, [
                            ("region", "region"), ("labels", "labels"), ("driver", "driver"),
                            ("planted_latency", "planted latency (s)"), ("recovered_latency", "recovered (s)"),
                            ("latency_error", "error (s)"), ("recovered_r", "peak r"),
                            ("recovered_layer", "best layer")]),
                        title="Planted truth vs recovered", section="Findings")
    figs = _figures(catalog, ds, rows, truth) + _set_figures(outputs, catalog, truth, signal)
    for section, title, fig, caption in figs:
        report.add_figure(fig, title=title, caption=caption, section=section)
    runs = [json.loads(line) for line in runs_path.read_text().splitlines() if line.strip()] if runs_path.exists() else []
    report.add_html(_provenance_html(outputs, runs), title="What ran", section="Provenance")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.tmp-{os.getpid()}.html")
    try:
        report.save(tmp, open_browser=False, overwrite=True, verbose="error")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    record = {"key": key, "headline": sentences, "n_figures": len(figs), "truth": compared}
    side_tmp = sidecar.with_name(f".{sidecar.name}.tmp-{os.getpid()}")
    side_tmp.write_text(json.dumps(record, default=str))
    os.replace(side_tmp, sidecar)
    log.info("report: %d figures written to %s in %.1f s", len(figs), path, time.perf_counter() - t0)
    return ReportResult(path, sentences, True, len(figs), compared)
