"""Validated configuration of the MEG stage (defaults: reference.md §2)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from mfrs.meg.types import (
    BANDS,
    Band,
    CovMethod,
    EcgMethod,
    IcaMethod,
    InverseMethod,
    Orientation,
    Presentation,
    SensorType,
    SourceSpacing,
    TargetGrid,
)
from mfrs.stage import ExecSettings, StageConfig

__all__ = [
    "Config",
    "MaxwellConfig",
    "FilterConfig",
    "IcaConfig",
    "EventsConfig",
    "EpochsConfig",
    "CovarianceConfig",
    "SourceConfig",
    "Exec",
]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MaxwellConfig(_Section):
    """Maxwell filter (tSSS); runs only when the catalog gives calibration and cross-talk files."""

    enabled: bool = True
    st_duration: float | None = Field(10.0, gt=0, description="tSSS buffer (s); None = plain SSS")
    require_files: bool = Field(
        True, description="skip (with the reason logged) when the catalog gives no calibration / "
        "cross-talk file; False runs tSSS without them")
    destination_run: int | None = Field(
        4, description="move every run to this run's head position (ds000117: run 4; "
        "the first run when absent); None keeps each run's own position")
    movement_compensation: bool = Field(
        True, description="compensate head movements with each run's head positions when the "
        "catalog entry 'ds000117' names them (params.head_pos); skipped, with the reason logged, "
        "where it does not")


class FilterConfig(_Section):
    """Zero-phase FIR filters (Hamming window, firwin design)."""

    l_freq: float | None = Field(None, gt=0, description="MEG high-pass (Hz); None = none")
    h_freq: float | None = Field(90.0, gt=0, description="MEG low-pass (Hz)")
    eog_l_freq: float | None = Field(1.0, gt=0, description="EOG high-pass (Hz)")
    notch_freqs: list[float] = Field(default_factory=list, description="line-noise notches (Hz)")


class IcaConfig(_Section):
    """ICA on all runs concatenated (MEG only, every ``decim``-th sample, gathered run by run) with ECG/EOG
    component detection on the same decimated copy."""

    enabled: bool = True
    method: IcaMethod = "fastica"
    n_components: float | int = Field(0.999, gt=0)
    fit_l_freq: float | None = Field(1.0, gt=0, description="high-pass of the copy ICA is fitted on")
    decim: int = Field(11, ge=1)
    reject_grad: float | None = Field(4000e-13, gt=0, description="T/m")
    reject_mag: float | None = Field(4e-12, gt=0, description="T")
    ecg_method: EcgMethod = "ctps"
    ecg_threshold: float | str = 0.8
    eog_threshold: float = Field(3.0, gt=0, description="z-score of the EOG correlation")
    max_ecg: int = Field(3, ge=0)
    max_eog: int = Field(3, ge=0)
    max_iter: int = Field(1000, ge=1)
    extended: bool = Field(True, description="infomax/picard: extended (sub- and super-Gaussian sources)")
    ortho: bool = Field(True, description="picard: orthogonal unmixing (the fastica solution, faster)")
    fit_duration: float | None = Field(
        None, gt=0, description="seconds of the concatenated runs (from the start) used to fit ICA "
        "and find ECG/EOG components; None = all (reference). The ICA is applied to all data")


class EventsConfig(_Section):
    """Events from STI101, matched to the BIDS events.tsv."""

    stim_channel: str = "STI101"
    mask: int = Field(4096 + 256, ge=0, description="trigger bits ignored (mask_type not_and)")
    min_duration: float = Field(0.003, ge=0, description="s")
    delay: float = Field(0.0345, description="trigger-to-screen delay added to every event (s)")
    presentations: list[Presentation] = Field(default_factory=lambda: list[Presentation](["first"]), min_length=1)
    tolerance: float = Field(0.002, ge=0, description="max |STI101 - events.tsv| onset (s)")


class EpochsConfig(_Section):
    """Epochs, baseline, autoreject global threshold, optional resampling."""

    tmin: float = -0.2
    tmax: float = 0.8
    baseline: tuple[float | None, float | None] = (-0.2, 0.0)
    autoreject: bool = True
    channels: SensorType = Field("meg", description="channels written to the epochs store")
    resample_sfreq: float | None = Field(None, gt=0, description="resample epochs to this rate (Hz)")

    @model_validator(mode="after")
    def _order(self) -> "EpochsConfig":
        if self.tmin >= self.tmax:
            raise ValueError(f"epochs.tmin ({self.tmin}) must be below epochs.tmax ({self.tmax})")
        return self


class CovarianceConfig(_Section):
    """Noise covariance from the pre-stimulus baseline."""

    method: CovMethod = "shrunk"
    tmax: float = 0.0
    cv: int = Field(3, ge=2)


class SourceConfig(_Section):
    """Forward model, inverse operator, morph to the fsaverage grid, regions."""

    spacing: SourceSpacing = "oct6"
    bem_ico: int = Field(4, ge=3, le=5, description="BEM downsampling (4 = 5120 triangles)")
    conductivity: float = Field(0.3, gt=0)
    mindist: float = Field(5.0, ge=0, description="mm")
    sensors: SensorType = "grad"
    method: InverseMethod = "MNE"
    loose: float = Field(0.2, ge=0, le=1)
    depth: float | None = Field(0.8, ge=0)
    snr: float = Field(3.0, gt=0)
    orientation: Orientation = Field(
        "norm", description="norm: length of the (loose) source vector; normal: signed normal component")
    grid: TargetGrid = "ico5"
    morph_smooth: int | None = Field(None, ge=1, description="None = MNE's automatic smoothing")
    drop_regions: list[str] = Field(
        default_factory=lambda: ["unknown"],
        description="labels dropped from `vertex` (prefix match; reference drops the 2 unknown)")


class Exec(ExecSettings):
    """Execution settings of the MEG stage: chunking of the epochs and sources stores (no number changes)."""

    chunk_mb: float = Field(64.0, gt=0, description="target chunk size (design: 16-128 MB)")
    time_chunk: int = Field(128, ge=1, description="time samples per chunk")


class Config(StageConfig):
    """MEG stage configuration: every step of reference.md §2.

    Examples
    --------
    >>> Config(subjects=["01"], envelopes=["theta"]).signals
    ['broadband', 'theta']
    """

    subjects: list[str] | None = Field(None, description="BIDS subject labels; None = all")
    runs: list[int] | None = Field(None, description="run numbers; None = all found")
    seed: int = 0
    maxwell: MaxwellConfig = MaxwellConfig()
    filter: FilterConfig = FilterConfig()
    ica: IcaConfig = IcaConfig()
    events: EventsConfig = EventsConfig()
    epochs: EpochsConfig = EpochsConfig()
    covariance: CovarianceConfig = CovarianceConfig()
    source: SourceConfig = SourceConfig()
    envelopes: list[Band] = Field(default_factory=list, description="Hilbert envelope bands")
    exec: Exec = Exec()

    @field_validator("subjects")
    @classmethod
    def _strip_sub(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else [s.removeprefix("sub-") for s in v]

    @field_validator("envelopes")
    @classmethod
    def _unique(cls, v: list[str]) -> list[str]:
        if len(set(v)) != len(v):
            raise ValueError(f"envelopes lists a band twice: {v}")
        return v

    @model_validator(mode="after")
    def _bands_below_lowpass(self) -> "Config":
        h = self.filter.h_freq
        for band in self.envelopes:
            if h is not None and BANDS[band][1] > h:
                raise ValueError(
                    f"envelope band {band!r} {BANDS[band]} Hz reaches above the low-pass "
                    f"filter.h_freq={h} Hz; raise filter.h_freq or drop the band")
        return self

    @property
    def signals(self) -> list[str]:
        """The ``signal`` coordinate written by the stage."""
        from mfrs.meg.types import signal_names

        return signal_names(self.envelopes)
