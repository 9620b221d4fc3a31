"""The whole study on paper: tasks, bytes, memory, core-hours and wall time, without any data.

``mfrs plan study --shape study --nodes 1 --nodes 50`` prints :func:`study_plan`'s table. The
shape is the reference study's (16 subjects, 6 runs at 1100 Hz, 428 stimuli, 1101 samples,
ico5, 448 regions, 6 signals, 7 networks); the per-task figures come from the stages' own
plan functions (:func:`mfrs.stages.meg.task_memory`, :func:`mfrs.stages.similarity.block_memory`
and its kernel calibration on this machine), so the paper plan and ``mfrs plan`` on real data agree.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

__all__ = ["StudyShape", "StageSize", "study_plan", "wall_seconds", "format_table"]


@dataclass(frozen=True)
class StudyShape:
    """The reference study in numbers (``shared/reference.md``); ``run_seconds`` is an assumption."""

    n_subjects: int = 16
    n_runs: int = 6
    sfreq: float = 1100.0
    run_seconds: float = 540.0  # ~9 min per ds000117 run (not in reference.md: an estimate)
    n_raw_channels: int = 404  # 306 MEG + 74 EEG + EOG/ECG/stim/misc, as the FIF files hold
    n_stimuli: int = 428
    n_presentations: int = 1  # first presentations are epoched
    n_samples: int = 1101
    n_vertices: int = 20484
    n_regions: int = 448
    n_signals: int = 6
    n_networks: int = 7
    layers_per_network: int = 100  # 50-150 in the reference
    n_categories: int = 4  # all, famous, unfamiliar, scrambled
    n_permutations: int = 1000
    time_chunk: int = 128
    chunk_mb: float = 64.0  # the MEG stage's sources chunks (exec.chunk_mb): all stimuli x time_chunk x vertices

    @property
    def raw_bytes_per_subject(self) -> float:
        """Float32 FIF bytes of one subject's runs."""
        return 4.0 * self.n_raw_channels * self.n_runs * self.run_seconds * self.sfreq

    @property
    def vertices_per_region(self) -> int:
        return math.ceil(self.n_vertices / self.n_regions)

    @property
    def vertex_chunk(self) -> int:
        """Vertices per chunk of the MEG stage's sources store."""
        return int(self.chunk_mb * 2**20 // (4 * self.n_stimuli * self.time_chunk))


@dataclass
class StageSize:
    """One stage of the study on paper."""

    stage: str
    tasks: int
    memory_per_task: int
    seconds_per_task: float
    reads: float
    writes: float
    notes: str = ""
    phases: int = 1  # tasks run in this many dependent rounds (meg: cleaning, then sources)

    @property
    def core_hours(self) -> float:
        return self.tasks * self.seconds_per_task / 3600


def wall_seconds(size: StageSize, workers: int) -> float:
    """Wall time of a stage on ``workers`` one-core workers: waves of equal tasks, phase after phase.

    >>> wall_seconds(StageSize("x", tasks=10, memory_per_task=0, seconds_per_task=60, reads=0, writes=0), 4)
    180.0
    >>> wall_seconds(StageSize("y", tasks=8, memory_per_task=0, seconds_per_task=60, reads=0, writes=0,
    ...                        phases=2), 4)
    120.0
    """
    per_phase = math.ceil(size.tasks / size.phases)
    return size.phases * math.ceil(per_phase / max(workers, 1)) * float(size.seconds_per_task)


def study_plan(shape: StudyShape | None = None, *, region_block: int = 4, time_block: int | None = None,
               time_batch: int = 8, calibrated: bool = True, searchlight: bool = False) -> list[StageSize]:
    """Size the MEG and similarity (raw mode: RDM movies) stages of the study, per task.

    Similarity seconds are CPU seconds from :func:`mfrs.stages.similarity.core_seconds` (the
    fused kernel calibrated at the study's sizes on this machine, one core; a few seconds;
    the reads of whole sources chunks as the MEG stage writes them); ``calibrated=False``
    leaves them 0. ``time_block`` defaults to the sources' time chunk, as in the stage.
    ``searchlight`` adds a cortex-wide searchlight (every ico5 vertex a centre,
    :func:`mfrs.stages.searchlight.searchlight_plan`) with the same signals, categories,
    layers and permutations.
    """
    from mfrs.stages.meg import task_memory, task_seconds
    from mfrs.stages.similarity import block_memory, core_seconds

    s = shape or StudyShape()
    src_per_subject = 4.0 * s.n_signals * s.n_stimuli * s.n_samples * s.n_vertices
    meg = StageSize(
        "meg", tasks=2 * s.n_subjects,
        memory_per_task=task_memory(raw_bytes=s.raw_bytes_per_subject, n_epochs=s.n_stimuli * s.n_presentations,
                                    n_stim=s.n_stimuli, n_times=s.n_samples, n_grid=s.n_vertices,
                                    n_signals=s.n_signals, time_chunk=s.time_chunk, n_runs=s.n_runs,
                                    n_raw_channels=s.n_raw_channels),
        seconds_per_task=task_seconds(raw_bytes=s.raw_bytes_per_subject, source_bytes=src_per_subject,
                                      n_signals=s.n_signals,
                                      epoch_samples=s.n_stimuli * s.n_presentations * s.n_samples) / 2,
        reads=s.raw_bytes_per_subject * s.n_subjects, writes=src_per_subject * s.n_subjects,
        notes=f"{s.n_subjects} subjects x 2 tasks (cleaning, then sources); runs of {s.run_seconds:.0f} s "
              f"assumed; cleaning holds one run at a time, ICA on every 11th sample", phases=2)
    n_layer = s.n_networks * s.layers_per_network
    p = s.n_stimuli * (s.n_stimuli - 1) // 2
    feat = s.vertices_per_region
    tb = min(time_block or s.time_chunk, s.n_samples)
    block_v = region_block * feat
    # a block of consecutive vertices meets (v_chunk + block_v - 1) / v_chunk vertex chunks on average
    v_chunks = 1 + (block_v - 1) / s.vertex_chunk
    t_chunks = math.ceil(tb / s.time_chunk)
    chunk_bytes = 4 * s.n_stimuli * s.time_chunk * s.vertex_chunk
    memory = block_memory(n_sub=s.n_subjects, n_stim=s.n_stimuli, n_feat=feat, samples=tb,
                          block_vertices=block_v, n_time=tb, n_region=region_block, n_layer=n_layer,
                          n_signal=s.n_signals, n_cat=s.n_categories, time_batch=time_batch,
                          n_permutations=s.n_permutations, chunk_bytes=chunk_bytes,
                          model_pairs=p * (1 + (s.n_categories - 1) / 9))
    blocks = math.ceil(s.n_regions / region_block) * math.ceil(s.n_samples / tb)
    n_rdm = s.n_signals * s.n_categories * s.n_regions * s.n_samples * (s.n_subjects + 1)
    n_group = s.n_signals * s.n_categories * s.n_regions * s.n_samples
    seconds = brain = 0.0
    if calibrated:
        per_task_chunks = s.n_subjects * s.n_signals * t_chunks * v_chunks
        categories = {"all": s.n_stimuli, **dict.fromkeys(("famous", "unfamiliar", "scrambled")[: s.n_categories - 1],
                                                          s.n_stimuli // 3)}
        parts = core_seconds(categories=categories, n_feat=feat, n_layer=n_layer, metric="correlation",
                             method="spearman", n_sub=s.n_subjects, n_images=s.n_signals * s.n_regions * s.n_samples,
                             n_tasks=blocks, n_chunks=blocks * per_task_chunks,
                             decoded_bytes=blocks * per_task_chunks * chunk_bytes, model_bytes=4.0 * n_layer * p,
                             model_chunks=n_layer, n_permutations=s.n_permutations)
        brain = parts["kernel"]
        seconds = sum(parts.values()) / blocks
    sim = StageSize(
        "similarity", tasks=blocks, memory_per_task=memory, seconds_per_task=seconds,
        reads=src_per_subject * s.n_subjects + 4.0 * n_layer * p,
        writes=4.0 * n_group * n_layer * (s.n_subjects + 1 + 2),
        notes=f"raw mode: {n_rdm:,} brain RDMs against {n_layer} layers in one pass ({brain / 3600:,.0f} "
              f"core-hours), {s.n_permutations} permutations of the group RDM (the rest); blocks of "
              f"{region_block} regions x {tb} samples")
    out = [meg, sim]
    if searchlight:
        out.append(_searchlight(s, n_layer, calibrated))
    return out


def _searchlight(s: StudyShape, n_layer: int, calibrated: bool, patch_size: int = 30) -> StageSize:
    from mfrs.stages.searchlight import searchlight_plan
    from mfrs.stages.similarity import calibrate

    cal = (calibrate(s.n_stimuli, patch_size, n_layer, "correlation", "spearman", n_sub=8) if calibrated
           else {"seconds_per_rdm": 0.0, "seconds_per_permuted_rdm": 0.0})
    p = searchlight_plan(s.n_vertices, s.n_samples, s.n_subjects, n_stimuli=s.n_stimuli, n_layers=n_layer,
                         patch_size=patch_size, n_signals=s.n_signals, n_categories=s.n_categories,
                         n_permutations=s.n_permutations, seconds_per_rdm=cal["seconds_per_rdm"],
                         seconds_per_permuted_rdm=cal["seconds_per_permuted_rdm"])
    return StageSize("searchlight", tasks=p.n_tasks, memory_per_task=p.memory_per_task,
                     seconds_per_task=p.seconds / max(p.n_tasks, 1), reads=sum(p.reads.values()),
                     writes=sum(p.writes.values()), notes=f"optional: {s.n_vertices:,} centres of ~{patch_size} "
                     "vertices (10 mm), as the similarity row otherwise")


def format_table(sizes: list[StageSize], nodes: list[int], cores_per_node: int) -> list[str]:
    """Lines of the paper plan: per stage, then the wall time on each node count."""
    from mfrs.stage import format_bytes

    lines = [f"{'stage':12s} {'tasks':>8s} {'memory/task':>12s} {'reads':>10s} {'writes':>10s} {'core-hours':>12s}"]
    for z in sizes:
        lines.append(f"{z.stage:12s} {z.tasks:8d} {format_bytes(z.memory_per_task):>12s} "
                     f"{format_bytes(z.reads):>10s} {format_bytes(z.writes):>10s} {z.core_hours:12,.0f}")
        if z.notes:
            lines.append(f"  note: {z.notes}")
    total = sum(z.core_hours for z in sizes)
    lines.append(f"{'total':12s} {sum(z.tasks for z in sizes):8d} {'':>12s} {'':>10s} {'':>10s} {total:12,.0f}")
    for n in nodes:
        workers = n * cores_per_node
        wall = sum(wall_seconds(z, workers) for z in sizes)
        per = ", ".join(f"{z.stage} {wall_seconds(z, workers) / 3600:,.1f} h" for z in sizes)
        lines.append(f"wall time on {n} node(s) x {cores_per_node} core(s): {wall / 3600:,.1f} h ({per})")
    return lines


def cores_per_node(profile: Any) -> int:
    """Worker cores one SLURM job gives (``cores`` of the profile, e.g. ``cluster/slurm.yaml``)."""
    return int(getattr(profile, "cores", 1) or 1)
