"""Validated configuration of the embedded ds000117-like data set: every size, effect and seed."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from mfrs.demo.anatomy import NAMED_REGIONS, Grid
from mfrs.nets.types import LayerKind, Network
from mfrs.types import CATEGORIES, Category

__all__ = [
    "DEFAULT_EFFECTS",
    "AlphaConfig",
    "ArtefactConfig",
    "DemoDataConfig",
    "Feature",
    "HeadConfig",
    "LayerDriver",
    "NoiseConfig",
    "PlantedEffect",
]

#: What drives a planted region's pattern across its vertices.
#: contrast: local RMS contrast on a coarse grid, relative to the category's mean (low-level;
#: the same mean drive for every category, so early visual regions show no face effect);
#: face: face-space code (PCA of the face images: identity structure), faces > scrambled;
#: familiarity: the face code with famous > unfamiliar > scrambled;
#: layer: the representational geometry of one layer of a network (``driver``), e.g. a
#: shallow layer of the ImageNet MobileNetV2 for V1 and a deep one for FFA.
Feature = Literal["contrast", "face", "familiarity", "layer"]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LayerDriver(_Section):
    """One layer of a network whose representation drives a planted region's pattern."""

    network: Network = "mobilenet_v2"
    weights: str = Field("weights_mobilenet_v2_imagenet",
                         description="a `weights` catalog entry (shipped offline) or untrained-seed<N>")
    layer: str = Field(description="module path, as the activations store's `name` coord")
    input_size: int = Field(96, ge=16, description="pixels, as the demo's activations stage")
    n_components: int = Field(8, ge=1, description="principal components of the layer kept as the code")
    kinds: tuple[LayerKind, ...] = Field(
        ("relu", "linear"), description="layer kinds the relative depth is counted over (the demo's)")

    @property
    def key(self) -> str:
        """``network/weights/layer``, the ``layer`` coord of the model RDMs."""
        return f"{self.network}/{self.weights}/{self.layer}"


class PlantedEffect(_Section):
    """One evoked component planted in a named region of both hemispheres."""

    region: str = Field(description="named region of the parcellation (V1, OFA, FFA, STS)")
    feature: Feature
    latency: float = Field(gt=0.0, lt=0.8, description="peak after stimulus onset on screen (s)")
    width: float = Field(gt=0.0, le=0.2, description="standard deviation of the Gaussian peak (s)")
    amplitude: float = Field(gt=0.0, description="peak dipole moment of the whole region (nAm)")
    pattern_strength: float = Field(
        1.0, ge=0.0, description="size of the stimulus-specific vertex pattern relative to the "
        "region's common response")
    category_gain: dict[Category, float] = Field(
        default_factory=lambda: dict.fromkeys(CATEGORIES, 1.0),
        description="amplitude factor per stimulus category")
    driver: LayerDriver | None = Field(None, description="the layer whose geometry the pattern follows "
                                       "(feature: layer)")

    @model_validator(mode="after")
    def _known_region(self) -> PlantedEffect:
        if (self.feature == "layer") != (self.driver is not None):
            raise ValueError(f"effect in {self.region}: feature 'layer' needs a driver, and a driver "
                             "needs feature 'layer'")
        if self.region not in NAMED_REGIONS:
            raise ValueError(
                f"region {self.region!r} is not a named region; expected one of "
                f"{sorted(NAMED_REGIONS)}")
        return self


def _imagenet(layer: str) -> LayerDriver:
    return LayerDriver(layer=layer)


#: A cortical hierarchy the demo's networks can see: each region's stimulus-specific pattern
#: follows one layer of the ImageNet MobileNetV2 (weights shipped offline), shallower for the
#: earlier regions; every category gets the same mean drive, so no region's geometry is a
#: plain face-vs-scrambled amplitude contrast.
DEFAULT_EFFECTS: tuple[PlantedEffect, ...] = (
    PlantedEffect(region="V1", feature="layer", latency=0.100, width=0.015, amplitude=60.0,
                  pattern_strength=1.5, driver=_imagenet("features.0.2")),
    PlantedEffect(region="OFA", feature="layer", latency=0.135, width=0.015, amplitude=35.0,
                  pattern_strength=1.5, driver=_imagenet("features.7.conv.0.2")),
    PlantedEffect(region="FFA", feature="layer", latency=0.170, width=0.020, amplitude=160.0,
                  pattern_strength=1.5, driver=_imagenet("features.16.conv.0.2")),
    PlantedEffect(region="STS", feature="layer", latency=0.250, width=0.040, amplitude=50.0,
                  pattern_strength=1.5, driver=_imagenet("features.18.2")),
)


class HeadConfig(_Section):
    """Head position in the helmet: a template position plus per-subject jitter."""

    position: tuple[float, float, float] = Field(
        (0.0, 0.0, 0.05), description="translation of dev_head_t (m): sensors 18-26 mm from "
        "the fsaverage scalp")
    jitter_mm: float = Field(3.0, ge=0.0, description="sd of the per-subject translation (mm)")
    rotation_deg: float = Field(2.0, ge=0.0, description="sd of the per-subject rotation (deg)")
    n_head_shape_points: int = Field(100, ge=0, description="digitised head-shape points")


class ArtefactConfig(_Section):
    """Physiological and environmental artefacts, in their own channels and leaking into MEG."""

    heart_rate: float = Field(70.0, gt=20, lt=200, description="beats per minute")
    heart_rate_variability: float = Field(0.05, ge=0, description="sd of the RR interval (s)")
    ecg_amplitude: float = Field(1.0e-3, gt=0, description="R peak in ECG063 (V)")
    ecg_meg_peak: float = Field(1.5e-12, ge=0, description="R peak in the strongest magnetometer (T)")
    blink_rate: float = Field(15.0, ge=0, description="blinks per minute")
    blink_amplitude: float = Field(300e-6, gt=0, description="blink peak in EOG062, VEOG (V)")
    eog_meg_peak: float = Field(2.0e-12, ge=0, description="blink peak in the strongest magnetometer (T)")
    saccade_rate: float = Field(8.0, ge=0, description="horizontal saccades per minute")
    saccade_amplitude: float = Field(60e-6, ge=0, description="saccade step in EOG061, HEOG (V)")
    line_freq: float = Field(50.0, gt=0, description="power line frequency (Hz); ds000117: 50")
    line_noise: float = Field(3.0e-13, ge=0, description="line noise in the strongest magnetometer (T)")


class AlphaConfig(_Section):
    """Occipital alpha rhythm, suppressed after each stimulus (event-related desynchronisation).

    Gives the band-limited envelopes (alpha signal) an effect to find.
    """

    region: str = Field("POS", description="named region whose vertices carry the rhythm")
    amplitude: float = Field(30.0, ge=0, description="sd of the region's dipole moment (nAm)")
    band: tuple[float, float] = Field((8.0, 12.0), description="frequency band (Hz)")
    suppression: float = Field(0.6, ge=0, le=1, description="fraction of the amplitude removed "
                               "at the deepest point of the desynchronisation")
    window: tuple[float, float] = Field((0.2, 0.6), description="desynchronisation after "
                                        "stimulus onset on screen (s): start, end")

    @model_validator(mode="after")
    def _check(self) -> AlphaConfig:
        if self.region not in NAMED_REGIONS:
            raise ValueError(f"alpha region {self.region!r} is not one of {sorted(NAMED_REGIONS)}")
        if not 0 < self.band[0] < self.band[1]:
            raise ValueError(f"alpha band {self.band} must be (low, high) with 0 < low < high")
        if not 0 <= self.window[0] < self.window[1] <= 0.8:
            raise ValueError(f"alpha window {self.window} must satisfy 0 <= start < end <= 0.8 s")
        return self


class NoiseConfig(_Section):
    """Sensor and brain noise."""

    mag: float = Field(15e-15, ge=0, description="white sensor noise sd, magnetometers (T)")
    grad: float = Field(4e-13, ge=0, description="white sensor noise sd, gradiometers (T/m)")
    n_brain_sources: int = Field(300, ge=0, description="background sources of 1/f activity")
    brain_amplitude: float = Field(8.0, ge=0, description="sd of each background source (nAm)")
    trial_variability: float = Field(0.2, ge=0, description="sd of the log amplitude per trial")
    subject_latency_jitter: float = Field(0.005, ge=0, description="sd of latency per subject (s)")
    subject_gain_sd: float = Field(0.15, ge=0, description="sd of the log amplitude per subject")


class DemoDataConfig(BaseModel):
    """Sizes, effects and seeds of the embedded ds000117-like data set.

    The defaults are the demo size; tests use smaller values (fewer stimuli,
    shorter runs, an ico-4 parcellation grid).
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    seed: int = Field(0, ge=0, description="one seed for everything the simulation draws")
    n_subjects: int = Field(4, ge=1, le=99)
    n_runs: int = Field(2, ge=1, le=9)
    max_stimuli_per_category: int | None = Field(
        None, ge=1, description="use at most this many stimuli of each category (None: all)")
    sfreq: float = Field(275.0, gt=0, description="sampling rate (Hz); ds000117: 1100")
    soa: float = Field(1.2, ge=1.0, description="mean stimulus onset asynchrony (s)")
    soa_jitter: float = Field(0.1, ge=0, description="uniform jitter of the SOA (s)")
    trigger_delay: float = Field(0.0345, ge=0, description="trigger-to-screen delay (s)")
    trigger_duration: float = Field(0.030, gt=0, description="STI101 pulse length (s)")
    immediate_repeat_fraction: float = Field(0.5, ge=0, le=1)
    delayed_repeat_lag: tuple[int, int] = Field(
        (3, 8), description="intervening trials before a delayed repeat (min, max)")
    repetition_suppression: float = Field(0.8, gt=0, description="amplitude factor of repeats")
    button_press_fraction: float = Field(
        0.5, ge=0, le=1, description="trials followed by a button press on STI101 (256 or 4096)")
    run_padding: float = Field(3.0, ge=1.0, description="recording before the first and after "
                               "the last trial (s)")
    grid: Grid = Field("ico5", description="parcellation grid of the template anatomy")
    region_size: int = Field(45, ge=1, description="grid vertices per region")
    n_face_components: int = Field(8, ge=1, description="dimensions of the face-space code")
    contrast_grid: int = Field(4, ge=1, description="cells per side of the local contrast map")
    effects: tuple[PlantedEffect, ...] = DEFAULT_EFFECTS
    head: HeadConfig = HeadConfig()
    artefacts: ArtefactConfig = ArtefactConfig()
    noise: NoiseConfig = NoiseConfig()
    alpha: AlphaConfig = AlphaConfig()

    @model_validator(mode="after")
    def _check(self) -> DemoDataConfig:
        lo, hi = self.delayed_repeat_lag
        if not 2 <= lo <= hi:
            raise ValueError(
                f"delayed_repeat_lag={self.delayed_repeat_lag} must satisfy 2 <= min <= max "
                "(a lag of 1 would be an immediate repeat)")
        if self.soa - self.soa_jitter < 1.0:
            raise ValueError(
                f"soa - soa_jitter = {self.soa - self.soa_jitter:.3f} s is shorter than an epoch "
                "(-0.2..0.8 s); raise soa or lower soa_jitter")
        nyquist = self.sfreq / 2
        if self.alpha.band[1] >= nyquist:
            raise ValueError(f"alpha band {self.alpha.band} reaches the Nyquist frequency {nyquist} Hz")
        if self.artefacts.line_freq >= nyquist:
            raise ValueError(
                f"line_freq={self.artefacts.line_freq} Hz is not below the Nyquist frequency "
                f"{nyquist} Hz of sfreq={self.sfreq}; raise sfreq")
        return self
