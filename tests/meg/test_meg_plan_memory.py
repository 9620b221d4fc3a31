"""The MEG plan's memory per task against the peak RSS of a worker that ran both of a subject's tasks.

Memory, not time: the bound is on bytes a worker held, measured in the worker (``VmHWM``). At this
size the worker's own memory and imports (the plan's fixed part) dominate, so the stated factor is
1.5 (the benchmark ``bench_study_scale.py`` checks +-30 % at the study's shape).
"""

from __future__ import annotations

from tests_support import peak_rss

FACTOR = 1.5


def test_plan_memory_holds_for_a_worker_running_one_subject(meg_inputs, meg_test_config, write_catalog, tmp_path):
    from mfrs.catalog import load_catalog
    from mfrs.cluster import LocalProfile, get_client
    from mfrs.pipeline import run_stage
    from mfrs.stages import meg as stage

    catalog = load_catalog(write_catalog(tmp_path / "plan-memory", inputs_from=meg_inputs.root))
    config = stage.Config.model_validate({**meg_test_config, "subjects": ["01"]})
    plan = stage.plan(config=config, catalog=catalog)
    with get_client(LocalProfile(n_workers=1, gpu_workers=0, memory_limit="4GB")) as client:
        run_stage(stage, config=config, catalog=catalog, client=client)
        (measured,) = client.run(peak_rss).values()
    assert catalog.open("sources").sizes["subject"] == 1
    ratio = plan.memory_per_task / measured
    assert 1 / FACTOR <= ratio <= FACTOR, (f"plan {plan.memory_per_task / 2**20:.0f} MiB, measured peak "
                                           f"{measured / 2**20:.0f} MiB (ratio {ratio:.2f})")
