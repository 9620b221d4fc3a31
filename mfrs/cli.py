"""The ``mfrs`` command line: demo, run, plan, status, catalog.

Exit codes (for cron and sbatch): 0 success; 1 internal error (a bug: rerun with
``--debug`` and report the traceback); 2 bad configuration or input; 3 cluster
could not start; 4 some units failed while the others completed (rerun to
resume); 130 interrupted.
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

log = logging.getLogger("mfrs.cli")


def _setup_logging(verbosity: int) -> None:
    from rich.logging import RichHandler

    level = {0: logging.INFO, 1: logging.DEBUG}.get(verbosity, logging.DEBUG) if verbosity >= 0 else logging.WARNING
    handler = RichHandler(show_path=False, console=None, rich_tracebacks=False, markup=False)
    handler.setFormatter(logging.Formatter("%(message)s"))
    root = logging.getLogger("mfrs")
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


def _output_status(pipe: Any, catalog: Any, stages: list[str]) -> list[dict[str, Any]]:
    from mfrs.pipeline import stage_config, stage_module, stage_outputs
    from mfrs.store import ZarrStore

    rows = []
    for name in stages:
        module = stage_module(name)
        cfg = stage_config(module, pipe)
        if hasattr(module, "status"):
            rows.extend(module.status(config=cfg, catalog=catalog))
            continue
        for out in stage_outputs(module, cfg, catalog):
            entry = catalog.entry(out)
            row = {"stage": name, "entry": out, "path": entry.uri, "units": 0, "complete": 0, "missing": []}
            if entry.kind == "zarr" and (Path(entry.uri) / "zarr.json").exists():
                row.update(ZarrStore.open(entry.uri, entry_name=out).status())
                row["state"] = "complete" if not row["missing"] else "incomplete"
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
        if r.get("missing"):
            shown = ", ".join(r["missing"][:8]) + (" ..." if len(r["missing"]) > 8 else "")
            click.echo(f"  {r['entry']}: missing {shown}")


def _run(obj: _Ctx, pipeline: str, stages: list[str] | None, subjects: list[str] | None, cluster: str,
         overwrite: bool) -> tuple[Any, Any, list[str], dict[str, float], bool]:
    from mfrs.cluster import get_client
    from mfrs.pipeline import load_pipeline, run_pipeline, select_stages

    catalog = obj.catalog()
    pipe = load_pipeline(pipeline, subjects=subjects)
    selected = select_stages(pipe, stages)
    before = _output_status(pipe, catalog, selected)
    nothing_to_do = not overwrite and all(r["state"] in ("complete", "present") for r in before)
    with get_client(cluster) as client:
        timings = run_pipeline(pipe, catalog=catalog, client=client, stages=selected, overwrite=overwrite)
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
    _echo_truth_vs_recovered(catalog)
    if nothing:
        click.echo("demo: every store was already complete; nothing to do (use --overwrite to recompute).")
    else:
        click.echo(f"demo: done in {time.perf_counter() - t0:.1f} s; data under {catalog.root}")


def _echo_truth_vs_recovered(catalog: Any) -> None:
    """The demo's planted truth beside what the RSA recovered (when both exist)."""
    from mfrs.demo.report import truth_vs_recovered
    from mfrs.demo.simulate import TRUTH_FILE

    truth = catalog.path("ds000117") / TRUTH_FILE
    if truth.exists() and (catalog.path("rsa") / "zarr.json").exists():
        for line in truth_vs_recovered(catalog.open("rsa"), json.loads(truth.read_text())):
            click.echo(line)


def _describe_store(catalog: Any, entry: str) -> None:
    ds = catalog.open(entry)

    def shorten(items: list[str], n: int = 6) -> str:
        return ", ".join(items[:n]) + (f", ... (+{len(items) - n} more)" if len(items) > n else "")

    dims = shorten([f"{k}={v}" for k, v in ds.sizes.items()])
    variables = shorten([f"{k}{tuple(v.dims)}" for k, v in ds.data_vars.items()], 4)
    size = sum(v.nbytes for v in ds.data_vars.values())
    click.echo(f"{entry}: {catalog.entry(entry).uri}\n  dims: {dims}\n  variables: {variables}\n"
               f"  {len(ds.data_vars)} variable(s), {size / 2**20:.1f} MiB uncompressed")


@cli.command()
@click.argument("pipeline", default="demo")
@_stages_opt
@_subjects_opt
@click.option("--json", "as_json", is_flag=True, help="Print the plan as JSON.")
@click.option("--worker-memory", default=None, help="Check against this worker memory (e.g. 4GB).")
@click.pass_obj
def plan(obj: _Ctx, pipeline: str, stages: tuple[str, ...], subjects: tuple[str, ...], as_json: bool,
         worker_memory: str | None) -> None:
    """Say what PIPELINE would read, write and compute, with sizes, before running it."""
    from dask.utils import parse_bytes

    from mfrs.errors import StoreError
    from mfrs.pipeline import load_pipeline, select_stages, stage_config, stage_module, stage_outputs
    from mfrs.stage import Plan, format_bytes
    from mfrs.store import ZarrStore

    catalog = obj.catalog()
    pipe = load_pipeline(pipeline, subjects=_split(subjects))
    plans = []
    for name in select_stages(pipe, _split(stages)):
        module = stage_module(name)
        cfg = stage_config(module, pipe)
        try:
            p = module.plan(config=cfg, catalog=catalog)
        except StoreError as exc:  # an input written by an earlier stage that has not run yet
            p = Plan(stage=name, notes=[f"cannot be sized before its inputs exist: {exc}"])
        outs = [catalog.entry(o) for o in stage_outputs(module, cfg, catalog)]
        existing = [o for o in outs if o.kind == "zarr" and (Path(o.uri) / "zarr.json").exists()]
        if len(outs) == 1 and existing:  # finished units are not work left to do
            store = ZarrStore.open(existing[0].uri, entry_name=existing[0].name)
            if len(store.units()) == p.n_units:
                p.n_tasks = len(store.missing_units()) + (not store.is_final_complete())
        if worker_memory:
            p.check_fits(parse_bytes(worker_memory))
        plans.append(p)
    if as_json:
        click.echo(json.dumps([p.as_dict() for p in plans], indent=2))
        return
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


@cli.command()
@click.argument("pipeline", default="demo")
@_stages_opt
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
@click.pass_obj
def status(obj: _Ctx, pipeline: str, stages: tuple[str, ...], as_json: bool) -> None:
    """Show what is complete, per stage and unit."""
    from mfrs.pipeline import load_pipeline, select_stages

    catalog = obj.catalog()
    pipe = load_pipeline(pipeline)
    rows = _output_status(pipe, catalog, select_stages(pipe, _split(stages)))
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=str))
    else:
        _print_status(rows)


@cli.command("catalog")
@click.pass_obj
def catalog_cmd(obj: _Ctx) -> None:
    """List the catalog's entries and where they live."""
    cat = obj.catalog()
    click.echo(f"catalog {cat.source} (root {cat.root})")
    for name in cat.names:
        e = cat.entry(name)
        click.echo(f"  {name:32s} {e.kind:10s} {e.uri}")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI, turning user errors into one line and an exit code."""
    debug = "--debug" in (argv if argv is not None else sys.argv[1:])
    try:
        cli.main(args=argv, prog_name="mfrs", standalone_mode=False)
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
