"""The ``mfrs`` command line: demo, run, plan, status, report, catalog.

Exit codes (for cron and sbatch): 0 success; 1 internal error (a bug: rerun with
``--debug`` and report the traceback); 2 bad configuration or input (damaged or
incomplete input stores included); 3 cluster could not start, or lost every
worker for longer than ``no_worker_timeout``; 4 some units failed while the
others completed (rerun to resume); 5 another run holds the data root's lock;
130 interrupted (Ctrl-C); 143 terminated (SIGTERM: ``scancel``, walltime).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

import click

from mfrs.errors import MfrsError

log = logging.getLogger(__name__)


def _setup_logging(verbosity: int) -> None:
    from rich.logging import RichHandler

    from mfrs.store import ignore_zarr_noise

    level = {0: logging.INFO, 1: logging.DEBUG}.get(verbosity, logging.DEBUG) if verbosity >= 0 else logging.WARNING
    handler = RichHandler(show_path=False, console=None, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("mfrs")
    ignore_zarr_noise()  # the application's choice, made once for the process
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    for noisy in ("distributed", "dask_jobqueue", "numba", "mne", "asyncio", "tornado"):
        logging.getLogger(noisy).setLevel(logging.WARNING if verbosity < 1 else logging.INFO)


class _Ctx:
    def __init__(self, catalog: str | None, debug: bool):
        self.catalog_path = catalog
        self.debug = debug

    def catalog(self) -> Any:
        from mfrs.catalog import load_catalog

        return load_catalog(self.catalog_path)


def _split(values: tuple[str, ...]) -> list[str] | None:
    out = [v for item in values for v in item.split(",") if v]
    return out or None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--catalog", "catalog", type=click.Path(dir_okay=False), default=None,
              help="Data catalog file (default: $MFRS_CATALOG or ./data_catalog.yaml).")
@click.option("--debug", is_flag=True, help="Show full tracebacks on errors.")
@click.option("-v", "--verbose", count=True, help="More log output (-v: debug).")
@click.option("-q", "--quiet", is_flag=True, help="Only warnings and errors.")
@click.version_option(package_name="mfrs")
@click.pass_context
def cli(ctx: click.Context, catalog: str | None, debug: bool, verbose: int, quiet: bool) -> None:
    """mfrs: MEG source RSA against CNN layers, on a laptop or a SLURM cluster."""
    _setup_logging(-1 if quiet else verbose)
    ctx.obj = _Ctx(catalog, debug)


_stages_opt = click.option("--stages", multiple=True, help="Only these stages (comma-separated or repeated).")
_subjects_opt = click.option("--subjects", multiple=True, help="Only these subjects, e.g. sub-01,sub-02.")
_cluster_opt = click.option("--cluster", "cluster", default="local", show_default=True,
                            help="Cluster profile (local, slurm, cluster/<name>.yaml) or scheduler address.")
_overwrite_opt = click.option("--overwrite", is_flag=True,
                              help="Recompute and replace finished work (default: resume, skipping it).")


def _settings_changes(stage: str, cfg: Any, store: Any) -> list[str]:
    """Parameters of ``cfg`` that differ from those ``store`` was made with (``key: old → new``)."""
    from mfrs.provenance import parameter_changes, science_parameters

    prov = store.provenance
    old = prov.get("parameters")
    if prov.get("stage") != stage or not isinstance(old, dict):
        return []
    current, _ = science_parameters(cfg)
    if not isinstance(current, dict):
        return []
    # only the keys both hold: a stage may record a narrowed config per store (one network of several)
    common = set(old) & set(current)
    return parameter_changes({k: old[k] for k in common}, {k: current[k] for k in common})


def _output_status(pipe: Any, catalog: Any, stages: list[str]) -> list[dict[str, Any]]:
    from mfrs.pipeline import stage_config, stage_module
    from mfrs.store import ZarrStore

    rows = []
    for name in stages:
        module = stage_module(name)
        cfg = stage_config(module, pipe)
        for out in module.outputs(cfg, catalog):
            entry = catalog.entry(out)
            row = {"stage": name, "entry": out, "path": entry.uri, "units": 0, "complete": 0, "missing": []}
            if entry.kind == "zarr" and (Path(entry.uri) / "zarr.json").exists():
                store = ZarrStore.open(entry.uri, entry_name=out)
                row.update(store.status())
                row["changed"] = _settings_changes(name, cfg, store)
                stale = any(why.startswith("stale") for why in row.get("problems", {}).values())
                row["state"] = ("other parameters" if row["changed"] else "complete" if not row["missing"]
                                else "stale" if stale else "incomplete")
            else:
                row["state"] = "not started" if entry.kind == "zarr" else ("present" if Path(entry.uri).exists() else "not started")
            rows.append(row)
    return rows


def _print_status(rows: list[dict[str, Any]]) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title="mfrs status")
    for col in ("stage", "entry", "state", "units", "path"):
        table.add_column(col)
    for r in rows:
        units = f"{r['complete']}/{r['units']}" if r.get("units") else "-"
        table.add_row(r["stage"], r["entry"], r["state"], units, str(r["path"]))
    Console(width=160).print(table)
    for r in rows:
        if r.get("changed"):
            click.echo(f"  {r['entry']}: made with other parameters ({'; '.join(r['changed'])}); "
                       "`run` refuses it without --overwrite")
        if r.get("missing"):
            shown = ", ".join(r["missing"][:8]) + (" ..." if len(r["missing"]) > 8 else "")
            click.echo(f"  {r['entry']}: missing {shown}")
        for key, why in list(r.get("problems", {}).items())[:8]:
            click.echo(f"  {r['entry']}: {key}: {why}")


def _run(obj: _Ctx, pipeline: str, stages: list[str] | None, subjects: list[str] | None, cluster: str,
         overwrite: bool) -> tuple[Any, Any, list[str], dict[str, float], bool]:
    from mfrs.cluster import get_client
    from mfrs.pipeline import load_pipeline, run_pipeline, select_stages

    catalog = obj.catalog()
    pipe = load_pipeline(pipeline, subjects=subjects)
    selected = select_stages(pipe, stages)
    before = _output_status(pipe, catalog, selected)
    nothing_to_do = not overwrite and all(r["state"] in ("complete", "present") for r in before)
    from mfrs.lock import data_root_lock

    with data_root_lock(catalog.root, command=" ".join(sys.argv[1:]) or "mfrs run"), get_client(cluster) as client:
        timings = run_pipeline(pipe, catalog=catalog, client=client, stages=selected, overwrite=overwrite)
    if not nothing_to_do:  # the report's "what ran": wall time per stage of runs that computed something
        from mfrs.report import record_run

        record_run(catalog, pipeline, timings, cluster=cluster)
    return catalog, pipe, selected, timings, nothing_to_do


@cli.command()
@click.argument("pipeline")
@_stages_opt
@_subjects_opt
@_cluster_opt
@_overwrite_opt
@click.pass_obj
def run(obj: _Ctx, pipeline: str, stages: tuple[str, ...], subjects: tuple[str, ...], cluster: str,
        overwrite: bool) -> None:
    """Run PIPELINE (a name in pipelines/ or a YAML file), resuming unfinished work."""
    catalog, pipe, selected, timings, _ = _run(obj, pipeline, _split(stages), _split(subjects), cluster, overwrite)
    _print_status(_output_status(pipe, catalog, selected))
    click.echo("finished: " + ", ".join(f"{k} {v:.1f} s" for k, v in timings.items()))


@cli.command()
@_cluster_opt
@_overwrite_opt
@click.pass_obj
def demo(obj: _Ctx, cluster: str, overwrite: bool) -> None:
    """Run the demo pipeline on the embedded data and show what it made."""
    t0 = time.perf_counter()
    catalog, pipe, selected, timings, nothing = _run(obj, "demo", None, None, cluster, overwrite)
    rows = _output_status(pipe, catalog, selected)
    _print_status(rows)
    for r in rows:
        if r["state"] == "complete":
            _describe_store(catalog, r["entry"])
    if nothing:
        click.echo("demo: every store was already complete; nothing to do (use --overwrite to recompute).")
    else:
        click.echo(f"demo: done in {time.perf_counter() - t0:.1f} s; data under {catalog.root}")
    _echo_report(catalog, "demo")


def _echo_report(catalog: Any, pipeline: str, *, force: bool = False) -> None:
    """Build (or reuse) the pipeline's HTML report; print the headline findings, then its path last."""
    from mfrs.report import build_report

    result = build_report(pipeline, catalog=catalog, force=force)
    click.echo("headline findings:")
    for line in result.headline:
        click.echo(f"  {line}")
    if result.truth:
        click.echo("planted vs recovered (group RDM, all stimuli, best trained layer; hemispheres pooled):")
    for row in result.truth:
        if row.get("recovered_latency") is not None and row.get("planted_latency") is not None:
            driver = f" (driven by {row['driver']})" if row.get("driver") else ""
            click.echo(f"  {row['region']}: planted {row['planted_latency'] * 1e3:.0f} ms{driver}; recovered "
                       f"{row['recovered_latency'] * 1e3:.0f} ms, r = {row['recovered_r']:.3f}, "
                       f"layer {row['recovered_layer']}")
    click.echo(f"report ({'written' if result.rebuilt else 'unchanged'}, {result.n_figures} figures): "
               f"{result.path}")


def _describe_store(catalog: Any, entry: str) -> None:
    ds = catalog.open(entry)

    def shorten(items: list[str], n: int = 6) -> str:
        return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")

    dims = shorten([f"{k}={v}" for k, v in ds.sizes.items()])
    variables = shorten([f"{k}{tuple(v.dims)}" for k, v in ds.data_vars.items()], 4)
    size = sum(v.nbytes for v in ds.data_vars.values())
    click.echo(f"{entry}: {catalog.entry(entry).uri}\n  dims: {dims}\n  variables: {variables}\n"
               f"  {len(ds.data_vars)} variable(s), {size / 2**20:.1f} MiB uncompressed")


def _demo_data_warning(catalog: Any, pipe: Any) -> str | None:
    """A warning when a pipeline other than the demo is sized on the demo's simulated recordings."""
    from mfrs.demo.simulate import TRUTH_FILE

    if pipe.source is not None and Path(pipe.source).stem == "demo":
        return None
    try:
        truth = Path(catalog.path("ds000117")) / TRUTH_FILE
    except Exception:  # noqa: BLE001 - a remote or absent entry is not the demo's set
        return None
    if not truth.is_file():
        return None
    return (f"catalog entry 'ds000117' ({truth.parents[2]}) is the demo's simulated set, so these sizes are the "
            f"demo's, not {Path(pipe.source).stem if pipe.source else 'this pipeline'}'s real data; point "
            "'ds000117', 'anatomy' and 'stimulus_images' in the catalog at the real data to size it.")


@cli.command()
@click.argument("pipeline", default="demo")
@_stages_opt
@_subjects_opt
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--worker-memory", default=None, help="Check against this worker memory (e.g. 4GB).")
@click.option("--shape", type=click.Choice(["data", "study"]), default="data", show_default=True,
              help="data: size what the catalog holds; study: the reference study's shape on paper, no data needed.")
@click.option("--nodes", "nodes", multiple=True, type=click.IntRange(min=1), help="With --shape study: wall time "
              "on this many SLURM jobs (repeat; cores per job from cluster/slurm.yaml). Default: 1 and 50.")
@click.option("--cores", type=click.IntRange(min=1), default=None,
              help="With --shape study: one-core workers per node instead of the slurm profile's cores.")
@click.option("--searchlight", is_flag=True, help="With --shape study: add a searchlight over every ico5 vertex.")
@click.pass_obj
def plan(obj: _Ctx, pipeline: str, stages: tuple[str, ...], subjects: tuple[str, ...], as_json: bool,
         worker_memory: str | None, shape: str, nodes: tuple[int, ...], cores: int | None,
         searchlight: bool) -> None:
    """Say what PIPELINE would read, write and compute, with sizes, before running it."""
    from dask.utils import parse_bytes

    from mfrs.errors import StoreError
    from mfrs.pipeline import load_pipeline, plan_stage, select_stages, stage_config, stage_module
    from mfrs.stage import Plan, format_bytes

    if shape == "study":
        _study_on_paper(list(nodes) or [1, 50], as_json, cores, searchlight)
        return
    catalog = obj.catalog()
    pipe = load_pipeline(pipeline, subjects=_split(subjects))
    plans = []
    for name in select_stages(pipe, _split(stages)):
        module = stage_module(name)
        cfg = stage_config(module, pipe)
        try:
            p = plan_stage(module, config=cfg, catalog=catalog, pipeline=pipe)
        except StoreError as exc:  # an input written by an earlier stage that has not run yet
            p = Plan(stage=name, notes=[f"cannot be sized before its inputs exist: {exc}"])
        rows = _output_status(pipe, catalog, [name])
        if rows and all(r["state"] != "not started" for r in rows):
            # what is left, counted per output and unit as `status` does
            p.n_units = sum(r.get("tasks", max(r["units"], 1)) for r in rows)
            p.n_tasks = sum(r.get("tasks", 0) if r.get("changed") else len(r["missing"]) for r in rows)
            p.notes += [f"{r['entry']}: {r['complete']}/{r['units']} units complete" for r in rows if r["units"]]
        for r in rows:
            if r.get("changed"):
                p.notes.append(f"{r['entry']} was made with other parameters ({'; '.join(r['changed'])}): "
                               "`run` refuses it without --overwrite")
            for key, why in list(r.get("problems", {}).items())[:4]:
                p.notes.append(f"{r['entry']} {key}: {why}")
        if worker_memory:
            p.check_fits(parse_bytes(worker_memory))
        plans.append(p)
    warning = _demo_data_warning(catalog, pipe)
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in plans], indent=2))
        return
    if warning:
        click.echo(f"warning: {warning}")
    for p in plans:
        if not p.n_units:
            click.echo(f"{p.stage}: not sized yet")
            for note in p.notes:
                click.echo(f"  note: {note}")
            continue
        click.echo(f"{p.stage}: {p.n_tasks} of {p.n_units} task(s) to run, "
                   f"{format_bytes(p.memory_per_task)} per task, ~{p.seconds:.0f} s on one core"
                   + (f", {p.flops:.3g} FLOP" if p.flops else ""))
        for k, v in p.reads.items():
            click.echo(f"  reads  {k}: {format_bytes(v)}")
        for k, v in p.writes.items():
            click.echo(f"  writes {k}: {format_bytes(v)}")
        for note in p.notes:
            click.echo(f"  note: {note}")


def _study_on_paper(nodes: list[int], as_json: bool, cores: int | None, searchlight: bool) -> None:
    """Print :func:`mfrs.sizing.study_plan` for ``nodes`` SLURM jobs of the ``slurm`` profile."""
    from mfrs.cluster import load_profile
    from mfrs.sizing import StudyShape, cores_per_node, format_table, study_plan, wall_seconds

    shape = StudyShape()
    sizes = study_plan(shape, searchlight=searchlight)
    cores = cores or cores_per_node(load_profile("slurm"))
    if as_json:
        click.echo(json.dumps({"shape": shape.__dict__, "cores_per_node": cores, "stages": [
            {**z.__dict__, "core_hours": z.core_hours,
             "wall_seconds": {str(n): wall_seconds(z, n * cores) for n in nodes}} for z in sizes]}, indent=2))
        return
    click.echo(f"the study on paper: {shape.n_subjects} subjects, {shape.n_signals} signals, {shape.n_networks} "
               f"networks, {shape.n_regions} regions x {shape.n_samples} samples, {shape.n_stimuli} stimuli, "
               f"{shape.n_permutations} permutations (no data read)")
    for line in format_table(sizes, nodes, cores):
        click.echo(line)


@cli.command()
@click.argument("pipeline", default="demo")
@_stages_opt
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.option("--verify", is_flag=True, help="Also read every chunk of every complete unit and check its digest.")
@click.option("--repair", is_flag=True, help="With --verify: unmark damaged units so that `run` recomputes them.")
@click.pass_obj
def status(obj: _Ctx, pipeline: str, stages: tuple[str, ...], as_json: bool, verify: bool, repair: bool) -> None:
    """Show what is complete, per stage and unit."""
    from mfrs.pipeline import load_pipeline, select_stages

    catalog = obj.catalog()
    pipe = load_pipeline(pipeline)
    selected = select_stages(pipe, _split(stages))
    if repair:  # unmarking writes: not while a run works on the same data root
        from mfrs.lock import data_root_lock

        with data_root_lock(catalog.root, command="status --verify --repair"):
            damaged = _verify(pipe, catalog, selected, repair=True)
    else:
        damaged = _verify(pipe, catalog, selected, repair=False) if verify else {}
    rows = _output_status(pipe, catalog, selected)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _print_status(rows)
    if damaged and not repair:
        from mfrs.errors import StoreError

        raise StoreError(f"{len(damaged)} damaged unit(s) ({', '.join(list(damaged)[:4])}); rerun with "
                         "`mfrs status --verify --repair` to unmark them, then `mfrs run` to recompute them.")


def _verify(pipe: Any, catalog: Any, stages: list[str], *, repair: bool) -> dict[str, str]:
    """Read and check every chunk of the stages' complete units; print and (``repair``) unmark the damaged."""
    from mfrs.pipeline import stage_config, stage_module
    from mfrs.store import ZarrStore

    damaged = {}
    for name in stages:
        module = stage_module(name)
        for out in module.outputs(stage_config(module, pipe), catalog):
            entry = catalog.entry(out)
            if entry.kind != "zarr" or not (Path(entry.uri) / "zarr.json").exists():
                continue
            store = ZarrStore.open(entry.uri, entry_name=out)
            by_key = {u.key: u for u in store.units()}
            for key, why in store.verify().items():
                damaged[f"{out} {key}"] = why
                click.echo(f"damaged: {out} ({store.path}) unit {key}: {why}"
                           + ("; unmarked, `mfrs run` recomputes it" if repair else ""))
                if repair:
                    store.unmark(by_key[key])
    if not damaged:
        click.echo("verify: every chunk of every complete unit matches its digest")
    return damaged


@cli.command()
@click.argument("pipeline", default="demo")
@click.option("--force", is_flag=True, help="Rebuild the report even if no store changed.")
@click.pass_obj
def report(obj: _Ctx, pipeline: str, force: bool) -> None:
    """Write PIPELINE's results as one HTML report under the data root; its path is printed last."""
    _echo_report(obj.catalog(), pipeline, force=force)


@cli.command("catalog")
@click.pass_obj
def catalog_cmd(obj: _Ctx) -> None:
    """List the catalog's entries and where they live."""
    cat = obj.catalog()
    click.echo(f"catalog {cat.source} (root {cat.root})")
    for name in cat.names:
        e = cat.entry(name)
        click.echo(f"  {name:32s} {e.kind:10s} {e.uri}")


class Terminated(BaseException):
    """SIGTERM arrived (``scancel``, a walltime): unwinds like Ctrl-C, closing the cluster and the lock."""


def _on_sigterm(signum: int, frame: Any) -> None:
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and an exit code."""
    import signal
    import threading

    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, _on_sigterm)
    try:
        cli.main(args=argv, prog_name="mfrs", standalone_mode=False)
    except Terminated:
        click.echo("terminated (SIGTERM): units finished before it are complete and marked, nothing else; "
                   "rerun the same command to resume", err=True)
        return 143
    except click.exceptions.Abort:
        click.echo("interrupted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return 2
    except MfrsError as exc:
        if debug:
            raise
        click.echo(f"error: {exc}", err=True)
        return exc.exit_code
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        return 130
    except Exception as exc:
        if debug:
            raise
        click.echo(f"internal error: {type(exc).__name__}: {exc}\n(rerun with --debug for the traceback "
                   "and report it)", err=True)
        return 1
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
