"""Physically based simulator of multi-species surgical hyperspectral cubes.

Model (details and limits in docs/datasets.md):

1. Per species and organ a tissue composition (:data:`ORGAN_PARAMS`,
   :class:`~datasets.optics.TissueParams`: blood volume, haemoglobin concentration, StO2,
   water, fat, scattering a and b, epidermal melanin and thickness for skin) from literature
   physiology: species differ where their physiology differs, never by random offsets.
   Subjects and images add smaller random (biological) variation.
2. Tissue states change the composition: malperfusion (kidney clamping) lowers StO2 and
   changes blood volume, ICG adds an absorption band near 800 nm, "unclear" is a mild change.
3. Organ reflectance spectra (and their derivatives with respect to blood volume, StO2 and
   scattering) come from a diffusion model per organ and image: a few dozen spectra.
4. A scene is a smooth random organ layout with background (drapes, instruments), annotation
   gaps (ignore label), texture (smooth random parameter fields applied through the
   derivatives), shading and vignetting, specular highlights and multiplicative camera noise.
   The whole cube is one matrix product of a sparse per-pixel design matrix with the spectra,
   so a 480 x 640 x 100 cube takes well under half a second on one core.

Everything is deterministic given ``seed``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from datasets.cube_io import SUFFIXES, write_cube
from datasets.labels import DEFAULT_LABEL_MAPPING, LabelMapping
from datasets.manifest import (
    CUBES_DIR,
    LABELS_DIR,
    SPECIES,
    SPLITS_NAME,
    TISSUE_STATES,
    join_labels_present,
    write_manifest,
)
from datasets.optics import PARAM_NAMES, TissueParams, reflectance
from datasets.spectral import WAVELENGTHS_NM
from datasets.splits import make_nested_folds, write_data_spec

ORGANS = DEFAULT_LABEL_MAPPING.class_names[1:]  # the 11 tissue classes
PROVENANCE_NAME = "simulation.json"  # written into every simulated dataset


def _simulator_digest() -> str:
    """Fingerprint of everything that shapes a simulated cube: this module's and the optics'
    source, the camera wavelengths and the class names. Stored in each simulated dataset, so
    caches keyed on a dataset (e.g. trained baselines) notice a changed simulator."""
    h = hashlib.sha256()
    for path in (Path(__file__), Path(__file__).with_name("optics.py")):
        h.update(path.read_bytes())
    h.update(np.asarray(WAVELENGTHS_NM, dtype=np.float64).tobytes())
    h.update(repr(tuple(DEFAULT_LABEL_MAPPING.class_names)).encode())
    return h.hexdigest()[:16]


SIMULATOR_VERSION = _simulator_digest()

T = TissueParams
# Composition per species and organ. Differences between species come from physiology only
# (no random offsets): each row states what drives it. Values are rounded, indicative
# literature figures for the tissue that diffuse reflectance at 500-1000 nm samples (the top
# few millimetres), not measurements of this simulator:
#   blood     blood volume fraction. Organ blood contents after Brown et al., Toxicol Ind
#             Health 13:407 (1997), Table 30 (rat residual blood: liver 21 %, kidney 16 %,
#             spleen 22 %, lung 36 % of tissue volume) and ICRP Publication 89 (2002) for the
#             human distribution (liver ~10 %, kidney and spleen lower than in rodents); pig
#             organ blood contents taken as human (similar body size and organ perfusion).
#   hb        haemoglobin of the blood, g/L: human 140 (adult reference), anaesthetised
#             domestic pig 90 (Hannon et al., Lab Anim Sci 40:293 (1990): conscious pigs
#             11-12 g/dL, lower under anaesthesia and fluid loading), rat 150
#             (Sprague-Dawley reference ranges 14-16 g/dL).
#   sto2      tissue oxygen saturation; rats extract more oxygen (metabolic rate per kg ~5x
#             human, Kleiber scaling), so their tissue StO2 is lower at similar arterial SaO2;
#             young healthy ventilated pigs run higher than older surgical patients.
#   water/fat Jacques, Phys Med Biol 58:R37 (2013) tissue tables; surgical (adult) human
#             omentum, pancreas, liver and peritoneum carry more fat than young lean pigs
#             (30-60 kg) and laboratory rats.
#   scat_a/b  reduced scattering at 500 nm and its power (Jacques 2013: soft tissue a 10-45
#             cm^-1, b 0.7-2); connective-tissue-rich porcine liver (interlobular septa) and
#             the muscular, trabecular storage spleen of pigs scatter more, thin-walled rat bowel less (the wall is < 1 mm thick, so part of
#             the light reaches the less scattering lumen).
#   skin      epidermal melanosome fraction and thickness (Jacques 2013: light human skin
#             1-6 %, ~80 um; white domestic pigs < 1 %, 50-100 um; albino rats none, ~20 um)
#             above a dermis with 2-4 % blood, so human skin shows haemoglobin bands.
ORGAN_PARAMS: dict[str, dict[str, TissueParams]] = {
    "human": {
        "stomach": T(0.050, 0.76, 0.74, 0.06, 24.0, 1.15, hb=140.0),  # perfused mucosa
        "small_bowel": T(0.070, 0.70, 0.82, 0.03, 18.0, 0.95, hb=140.0),
        "colon": T(0.028, 0.60, 0.80, 0.04, 30.0, 1.70, hb=140.0),  # less flow than ileum
        # liver: ~75 % of its inflow is portal venous blood, so StO2 is low; steatosis common
        "liver": T(0.100, 0.48, 0.70, 0.07, 18.0, 1.00, hb=140.0),
        "pancreas": T(0.035, 0.64, 0.64, 0.22, 26.0, 1.60, hb=140.0),  # fatty infiltration
        "kidney": T(0.060, 0.80, 0.82, 0.01, 20.0, 1.90, hb=140.0),
        "spleen": T(0.170, 0.66, 0.78, 0.01, 12.0, 0.70, hb=140.0),  # arterial red pulp
        "omentum": T(0.015, 0.76, 0.22, 0.70, 32.0, 1.55, hb=140.0),  # adult: mostly fat
        "lung": T(0.060, 0.90, 0.55, 0.02, 36.0, 1.65, hb=140.0),
        "skin": T(0.030, 0.65, 0.62, 0.15, 42.0, 1.45, 0.03, epidermis_mm=0.08, hb=140.0),
        "peritoneum": T(0.025, 0.80, 0.66, 0.25, 40.0, 0.90, hb=140.0),  # preperitoneal fat
    },
    "pig": {  # young, lean, healthy animals ventilated at FiO2 0.3-0.5: higher StO2
        "stomach": T(0.050, 0.82, 0.76, 0.03, 22.0, 1.10, hb=90.0),
        "small_bowel": T(0.070, 0.78, 0.82, 0.02, 17.0, 0.90, hb=90.0),
        "colon": T(0.030, 0.72, 0.78, 0.04, 24.0, 1.30, hb=90.0),  # spiral colon, lean
        "liver": T(0.100, 0.56, 0.74, 0.02, 28.0, 1.40, hb=90.0),  # thick septa: scattering
        "pancreas": T(0.045, 0.72, 0.76, 0.04, 22.0, 1.45, hb=90.0),  # lean, little fat
        "kidney": T(0.060, 0.86, 0.80, 0.01, 18.0, 1.70, hb=90.0),
        "spleen": T(0.170, 0.74, 0.78, 0.01, 18.0, 1.00, hb=90.0),  # muscular trabeculae
        "omentum": T(0.040, 0.80, 0.62, 0.18, 26.0, 1.30, hb=90.0),  # thin, membranous
        "lung": T(0.060, 0.95, 0.60, 0.02, 34.0, 1.55, hb=90.0),
        "skin": T(0.025, 0.72, 0.60, 0.25, 48.0, 1.40, 0.004, epidermis_mm=0.07, hb=90.0),
        "peritoneum": T(0.030, 0.86, 0.74, 0.08, 36.0, 0.85, hb=90.0),  # thin, little fat
    },
    "rat": {
        "stomach": T(0.065, 0.70, 0.78, 0.03, 18.0, 1.00, hb=150.0),  # thin wall
        "small_bowel": T(0.090, 0.66, 0.82, 0.02, 13.0, 0.85, hb=150.0),
        "colon": T(0.055, 0.66, 0.80, 0.03, 17.0, 1.05, hb=150.0),
        "liver": T(0.210, 0.45, 0.72, 0.03, 17.0, 0.95, hb=150.0),  # 21 % residual blood
        "pancreas": T(0.060, 0.60, 0.66, 0.22, 20.0, 1.40, hb=150.0),  # diffuse in fat
        "kidney": T(0.160, 0.74, 0.80, 0.01, 17.0, 1.55, hb=150.0),  # 16 % residual blood
        "spleen": T(0.220, 0.62, 0.78, 0.01, 12.0, 0.75, hb=150.0),  # 22 %
        "omentum": T(0.035, 0.72, 0.45, 0.40, 24.0, 1.30, hb=150.0),
        # lung: 36 % residual blood, about half of it in the air-filled depth that is sampled
        "lung": T(0.180, 0.88, 0.60, 0.02, 30.0, 1.45, hb=150.0),
        "skin": T(0.020, 0.66, 0.64, 0.10, 38.0, 1.35, 0.0, epidermis_mm=0.02, hb=150.0),
        "peritoneum": T(0.040, 0.76, 0.76, 0.06, 32.0, 0.80, hb=150.0),
    },
}
BASE_ORGAN_PARAMS: dict[str, TissueParams] = ORGAN_PARAMS["human"]

# Biological variation between subjects and images of one species (not between species):
# offsets on log blood, logit StO2, water (additive), log fat, log scat_a, scat_b (additive),
# log melanin, icg (unused), log epidermis thickness, log haemoglobin.
SUBJECT_SIGMA = np.array([0.12, 0.15, 0.015, 0.15, 0.08, 0.06, 0.3, 0.0, 0.1, 0.05])
IMAGE_SIGMA = np.array([0.06, 0.08, 0.01, 0.08, 0.04, 0.03, 0.1, 0.0, 0.03, 0.0])
N_OFFSETS = len(PARAM_NAMES)
# Pixel-level texture within an organ (log blood, logit StO2, log scat_a; x N(0, ~1) fields).
TEXTURE_SIGMA = np.array([0.15, 0.2, 0.1], dtype=np.float32)


@dataclass(frozen=True)
class SpeciesModel:
    """Naming of a species' subjects; its physiology is in :data:`ORGAN_PARAMS`."""

    name: str
    subject_format: str

    def subject_name(self, index: int) -> str:
        return self.subject_format.format(index + 1)


SPECIES_MODELS: dict[str, SpeciesModel] = {
    "human": SpeciesModel("human", "SPACE_{:06d}"),
    "pig": SpeciesModel("pig", "P{:03d}"),
    "rat": SpeciesModel("rat", "R{:03d}"),
}


def _logit(p: float) -> float:
    p = min(max(p, 1e-4), 1 - 1e-4)
    return float(np.log(p / (1 - p)))


def _sigmoid(x: float) -> float:
    return float(1.0 / (1.0 + np.exp(-x)))


def perturb(p: TissueParams, d: np.ndarray) -> TissueParams:
    """Apply offsets ``d`` (:data:`N_OFFSETS` values, transformed scale as in SUBJECT_SIGMA;
    shorter arrays leave the remaining parameters unchanged)."""
    d = np.concatenate([np.asarray(d, dtype=np.float64), np.zeros(N_OFFSETS)])[:N_OFFSETS]
    return TissueParams(
        blood=p.blood * float(np.exp(d[0])),
        sto2=_sigmoid(_logit(p.sto2) + d[1]),
        water=p.water + d[2],
        fat=p.fat * float(np.exp(d[3])),
        scat_a=p.scat_a * float(np.exp(d[4])),
        scat_b=p.scat_b + d[5],
        melanin=p.melanin * float(np.exp(d[6])),
        icg=p.icg,
        epidermis_mm=p.epidermis_mm * float(np.exp(d[8])),
        hb=p.hb * float(np.exp(d[9])),
    ).clipped()


def species_organ_params(species: str) -> dict[str, TissueParams]:
    """Mean composition of every organ of a species (before subject/image variation)."""
    if species not in ORGAN_PARAMS:
        raise ValueError(f"unknown species {species!r}; use one of {tuple(ORGAN_PARAMS)}")
    return {organ: ORGAN_PARAMS[species][organ].clipped() for organ in ORGANS}


_SPECIES_PARAMS = {s: species_organ_params(s) for s in SPECIES_MODELS}

# Background materials (not tissue): reflectance shapes of drapes, metal, gauze.
_WL = WAVELENGTHS_NM


def _logistic(x0: float, width: float) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-(_WL - x0) / width))


BACKGROUND_MATERIALS: dict[str, np.ndarray] = {
    "green_drape": 0.05 + 0.08 * np.exp(-0.5 * ((_WL - 535) / 25) ** 2) + 0.45 * _logistic(715, 18),
    "blue_drape": 0.04 + 0.14 * _logistic(540, -20) + 0.40 * _logistic(740, 22),
    "metal": 0.38 + 0.06 * (_WL - 500) / 500,
    "gauze": 0.70 - 0.35 * _logistic(560, -12) * 0.5,
}


# --- tissue states -------------------------------------------------------------------------------
@dataclass(frozen=True)
class StateEffect:
    """Composition changes of one image's tissue state (what the manifest records)."""

    tissue_state: str
    phase_type: str = ""
    clamping_location: str = ""
    clamped: bool = False
    icg_seconds: float | None = None
    severity: float = 0.0
    organs: tuple[str, ...] = ()

    def apply(self, organ: str, p: TissueParams) -> TissueParams:
        s = self.severity
        if self.tissue_state == "malperfused" and organ in self.organs:
            if self.phase_type == "ischemia":  # arterial clamping: little inflow, low StO2
                return p.with_(sto2=p.sto2 * (1 - 0.70 * s), blood=p.blood * (1 - 0.30 * s))
            if self.phase_type == "stasis":  # venous clamping: congestion
                return p.with_(sto2=p.sto2 * (1 - 0.55 * s), blood=p.blood * (1 + 0.6 * s))
            return p.with_(sto2=p.sto2 * (1 - 0.8 * s), blood=p.blood * (1 - 0.6 * s))
        if self.tissue_state == "icg":
            uptake = 2.5 if organ == "liver" else 1.0
            return p.with_(icg=35.0 * s * uptake)
        if self.tissue_state == "unclear" and organ in self.organs:
            return p.with_(sto2=p.sto2 * (1 - 0.25 * s))
        return p


def _icg_level(seconds: float) -> float:
    """Relative ICG concentration in blood after a bolus: fast rise, slow washout."""
    return float((1 - np.exp(-seconds / 15.0)) * np.exp(-seconds / 900.0))


def draw_state(
    tissue_state: str, rng: np.random.Generator, phase_type: str | None = None
) -> StateEffect:
    if tissue_state not in TISSUE_STATES:
        raise ValueError(f"unknown tissue state {tissue_state!r}; use one of {TISSUE_STATES}")
    if tissue_state == "malperfused":
        phase = phase_type or ("ischemia" if rng.random() < 0.7 else "stasis")
        location = {"ischemia": "renal_artery", "stasis": "renal_vein"}.get(phase, "")
        return StateEffect(
            "malperfused",
            phase,
            location,
            bool(location),
            None,
            float(rng.uniform(0.65, 1.0)),
            ("kidney",),
        )
    if tissue_state == "icg":
        seconds = float(rng.uniform(20.0, 600.0))
        return StateEffect("icg", icg_seconds=round(seconds, 1), severity=_icg_level(seconds))
    if tissue_state == "unclear":
        organ = ORGANS[int(rng.integers(len(ORGANS)))]
        return StateEffect("unclear", severity=float(rng.uniform(0.2, 0.8)), organs=(organ,))
    return StateEffect("physiological")


# --- scene synthesis ----------------------------------------------------------------------------
@lru_cache(maxsize=64)
def _kernel(n_out: int, n_grid: int) -> np.ndarray:
    """Gaussian interpolation matrix (n_out, n_grid): smooth upsampling of a coarse grid."""
    pos = (np.arange(n_out) + 0.5) / n_out * n_grid - 0.5
    d = pos[:, None] - np.arange(n_grid)[None, :]
    k = np.exp(-0.5 * (d / 0.75) ** 2)
    out = (k / k.sum(axis=1, keepdims=True)).astype(np.float32)
    out.setflags(write=False)
    return out


def smooth_fields(
    rng: np.random.Generator, n: int, height: int, width: int, grid: tuple[int, int]
) -> np.ndarray:
    """``n`` smooth random fields (n, H, W) with unit standard deviation."""
    gh, gw = max(2, min(grid[0], height)), max(2, min(grid[1], width))
    coarse = rng.standard_normal((n, gh, gw)).astype(np.float32)
    fields_ = _kernel(height, gh) @ coarse @ _kernel(width, gw).T
    std = fields_.reshape(n, -1).std(axis=1)
    return fields_ / np.maximum(std, 1e-6)[:, None, None]


def _choose_organs(rng: np.random.Generator, required: Sequence[str]) -> list[str]:
    n = int(rng.integers(3, 6))
    pool = [o for o in ORGANS if o not in required]
    extra = rng.choice(len(pool), size=max(0, n - len(required)), replace=False)
    return list(required) + [pool[i] for i in sorted(extra)]


def _dealt_organs(rng: np.random.Generator, index: int, state: str) -> list[str]:
    """Organs of a subject's image ``index``: four consecutive cards of a per-subject shuffled
    deck of all organs, so a subject's images show every organ about equally often (random
    draws per image leave organs out of small training sets). Kidney joins malperfusion."""
    deck = list(rng.permutation(len(ORGANS)))
    picked = [ORGANS[deck[(4 * index + j) % len(ORGANS)]] for j in range(4)]
    if state == "malperfused" and "kidney" not in picked:
        picked[-1] = "kidney"
    return [o for o in ORGANS if o in picked]


@dataclass
class SimulatedImage:
    cube: np.ndarray  # (H, W, C) float32 reflectance
    labels: np.ndarray  # (H, W) uint8 class indices, 255 ignore
    meta: dict[str, Any] = field(default_factory=dict)


def _derivative_spectra(p: TissueParams, step: float = 0.05) -> np.ndarray:
    """Reflectance and its derivatives w.r.t. log blood, logit StO2, log scat_a: (4, C)."""
    rows = []
    for d_index in (0, 1, 4):
        for sign in (1.0, -1.0):
            d = np.zeros(N_OFFSETS)
            d[d_index] = sign * step
            rows.append(perturb(p, d).as_array())
    spectra = reflectance(np.vstack([p.clipped().as_array()] + rows))
    base, pairs = spectra[0], spectra[1:].reshape(3, 2, -1)
    deriv = (pairs[:, 0] - pairs[:, 1]) / (2 * step)
    return np.vstack([base, deriv])


def _apply_noise(cube: np.ndarray, rng: np.random.Generator, sigma: float) -> None:
    """Multiplicative camera noise in place. Large cubes reuse two tiles of coprime sizes
    (cheaper than a full random draw; the sum of offsets repeats only after 61*53 rows)."""
    h, w, c = cube.shape
    if h * w <= 128 * 160:
        cube *= np.clip(1 + sigma * rng.standard_normal(cube.shape, dtype=np.float32), 0.5, 1.5)
        return
    s = float(sigma) / 2**0.5
    for th, tw in ((61, 67), (53, 71)):
        tile = np.clip(1 + s * rng.standard_normal((th, tw, c), dtype=np.float32), 0.5, 1.5)
        oy, ox = int(rng.integers(th)), int(rng.integers(tw))
        for y in range(-oy, h, th):
            for x in range(-ox, w, tw):
                y0, x0 = max(y, 0), max(x, 0)
                y1, x1 = min(y + th, h), min(x + tw, w)
                cube[y0:y1, x0:x1] *= tile[y0 - y : y1 - y, x0 - x : x1 - x]


def simulate_image(
    species: str,
    tissue_state: str = "physiological",
    height: int = 480,
    width: int = 640,
    seed: int | np.random.Generator = 0,
    subject_offsets: Mapping[str, np.ndarray] | None = None,
    organs: Sequence[str] | None = None,
    phase_type: str | None = None,
    noise: float = 0.012,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
) -> SimulatedImage:
    """Simulate one image: cube (H, W, 100) float32 reflectance, label mask and metadata.

    ``subject_offsets`` (organ -> N_OFFSETS offsets, from :func:`draw_subject`) makes images of one
    subject share their composition; ``organs`` fixes the organs in the scene (default:
    3-5 random organs, kidney always included for malperfusion).
    """
    if species not in SPECIES_MODELS:
        raise ValueError(f"unknown species {species!r}; use one of {tuple(SPECIES_MODELS)}")
    if height < 4 or width < 4:
        raise ValueError("images must be at least 4 x 4 pixels")
    rng = seed if isinstance(seed, np.random.Generator) else np.random.default_rng(seed)
    state = draw_state(tissue_state, rng, phase_type)
    if organs is None:
        organs = _choose_organs(rng, ["kidney"] if tissue_state == "malperfused" else [])
    organs = list(organs)
    bad = [o for o in organs if o not in BASE_ORGAN_PARAMS]
    if bad:
        raise ValueError(f"unknown organs {bad}")
    offsets = subject_offsets or {}

    # Region spectra: base reflectance + 3 derivative spectra per region, (4R + 1, C).
    params: dict[str, TissueParams] = {}
    blocks = []
    for organ in organs:
        p = _SPECIES_PARAMS[species][organ]
        d = (
            np.asarray(offsets.get(organ, np.zeros(N_OFFSETS)))
            + rng.standard_normal(N_OFFSETS) * IMAGE_SIGMA
        )
        p = state.apply(organ, perturb(p, d)).clipped()
        params[organ] = p
        blocks.append(_derivative_spectra(p))
    unknown = rng.random() < 0.3
    if unknown:  # tissue outside the label mapping (e.g. fat, vessels): labelled ignore
        p = perturb(
            ORGAN_PARAMS[species][ORGANS[int(rng.integers(len(ORGANS)))]],
            rng.normal(0, 0.4, N_OFFSETS),
        )
        blocks.append(_derivative_spectra(p))
    names = list(BACKGROUND_MATERIALS)
    m1, m2 = rng.choice(len(names), 2, replace=False)
    bg1, bg2 = BACKGROUND_MATERIALS[names[m1]], BACKGROUND_MATERIALS[names[m2]]
    blocks.append(np.vstack([bg1, (bg2 - bg1) * 0.5, 0.05 * bg1, np.zeros_like(bg1)]))
    n_regions = len(blocks)
    specular = 0.9 + 0.1 * (_WL - 500) / 500 * rng.uniform(-1, 1)
    design_spectra = np.vstack(blocks + [specular[None]]).astype(np.float32)

    # Layout: smooth random scores per region, argmax; background favoured at the border.
    h, w = height, width
    scores = smooth_fields(rng, n_regions, h, w, (5, 6)) + 0.5 * smooth_fields(
        rng, n_regions, h, w, (12, 15)
    )
    yy = ((np.arange(h) + 0.5) / h - 0.5)[:, None]
    xx = ((np.arange(w) + 0.5) / w - 0.5)[None, :]
    radius2 = (yy**2 + xx**2).astype(np.float32)
    bg_score = scores[-1]
    bg_score += 6.0 * radius2 - float(rng.uniform(0.8, 1.6))
    if "kidney" in organs:
        scores[organs.index("kidney")] += 0.3
    region = np.argmax(scores, axis=0)
    labels = np.empty((h, w), dtype=np.uint8)
    lut = np.array(
        [mapping.index_of(o) for o in organs]
        + ([mapping.ignore_index] if unknown else [])
        + [mapping.index_of("background")],
        dtype=np.uint8,
    )
    labels[:] = lut[region]
    # Annotation gaps: pixels where a second region scores nearly as high as the winner.
    near = scores.max(axis=0) - 0.08
    n_near = np.zeros((h, w), dtype=np.uint8)
    for r in range(n_regions):
        n_near += scores[r] > near
    labels[n_near >= 2] = mapping.ignore_index

    # Texture: parameter fields (coarse + fine) applied through the derivative spectra.
    tex = smooth_fields(rng, 3, h, w, (10, 12)) * 0.7
    tex += smooth_fields(rng, 3, h, w, (max(2, h // 4), max(2, w // 4))) * 0.5
    tex += rng.standard_normal((3, h, w), dtype=np.float32) * 0.3
    np.clip(tex, -3.0, 3.0, out=tex)
    tex *= TEXTURE_SIGMA[:, None, None]

    # Illumination: exposure, vignetting, smooth shading; specular highlights on tissue.
    illum = float(rng.uniform(0.85, 1.1)) * (1 - float(rng.uniform(0.2, 0.45)) * radius2 * 2)
    illum = illum * (1 + 0.12 * smooth_fields(rng, 1, h, w, (6, 8))[0])
    glint = smooth_fields(rng, 1, h, w, (max(2, h // 12), max(2, w // 12)))[0]
    spec = np.maximum(glint - 2.6, 0) * float(rng.uniform(0.3, 1.2))
    spec[region == n_regions - 1] = 0

    n = h * w
    k = design_spectra.shape[0]
    design = np.zeros((n, k), dtype=np.float32)
    rows = np.arange(n)
    col = 4 * region.reshape(-1)
    ill = illum.reshape(-1).astype(np.float32)
    design[rows, col] = ill
    for j in range(3):
        design[rows, col + 1 + j] = ill * tex[j].reshape(-1)
    design[:, -1] = spec.reshape(-1)
    cube = (design @ design_spectra).reshape(h, w, -1)
    del design
    _apply_noise(cube, rng, noise)
    np.maximum(cube, 0.0, out=cube)

    tissue = [o for o in organs if np.any(region == organs.index(o))]
    areas = np.array([np.count_nonzero(region == organs.index(o)) for o in tissue], float)
    weights = areas / areas.sum() if areas.sum() else areas
    meta: dict[str, Any] = {
        "species": species,
        "tissue_state": state.tissue_state,
        "phase_type": state.phase_type,
        "clamping_location": state.clamping_location,
        "clamped": state.clamped,
        "icg_seconds": state.icg_seconds,
        "sto2_mean": round(
            float(sum(wt * params[o].sto2 for o, wt in zip(tissue, weights, strict=True))), 4
        )
        if tissue
        else None,
        "blood_volume_mean": round(
            float(sum(wt * params[o].blood for o, wt in zip(tissue, weights, strict=True))), 5
        )
        if tissue
        else None,
        "labels_present": join_labels_present(mapping.names_present(labels)),
        "height": h,
        "width": w,
        "organ_params": {o: params[o] for o in organs},
    }
    return SimulatedImage(cube, labels, meta)


def draw_subject(rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Per-subject composition offsets for every organ."""
    return {organ: rng.standard_normal(N_OFFSETS) * SUBJECT_SIGMA for organ in ORGANS}


# --- datasets ------------------------------------------------------------------------------------
DEFAULT_SUBJECTS = {"pig": 6, "rat": 6, "human": 12}
DEFAULT_STATES = ("physiological", "physiological", "malperfused", "icg")


def _timestamp(rng: np.random.Generator, image_index: int) -> str:
    year = 2019 + int(rng.integers(0, 4))
    month, day = int(rng.integers(1, 13)), int(rng.integers(1, 29))
    hour, minute = int(rng.integers(8, 16)), int(rng.integers(0, 30))
    minute += image_index // 60
    second = image_index % 60
    return f"{year}_{month:02d}_{day:02d}_{hour:02d}_{minute:02d}_{second:02d}"


def _sub_seed(seed: int, *keys: str | int) -> np.random.Generator:
    """Independent generator per (seed, keys): images do not depend on generation order."""
    digest = hashlib.sha256(repr((seed,) + keys).encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:16], "little"))


def _auto_folds(names: list[str], species: list[str], seed: int) -> list[Any]:
    n_subjects = len({n.split("#", 1)[0] for n in names})
    for n_outer, n_inner in ((3, 5), (3, 3), (3, 2), (2, 2), (2, 1), (1, 1)):
        if n_subjects >= n_outer + (n_inner if n_inner > 1 else 1):
            try:
                return make_nested_folds(names, species, n_outer, n_inner, seed)
            except ValueError:
                continue
    return []


def _simulate_job(job: tuple) -> dict[str, Any]:
    """Simulate and write one image of :func:`simulate_dataset`; returns its manifest row."""
    root, seed, s, subj, i, state, height, width, cube_format, cube_dtype, mapping = job
    mapping = mapping or DEFAULT_LABEL_MAPPING  # None in worker processes (not picklable)
    model = SPECIES_MODELS[s]
    offsets = draw_subject(_sub_seed(seed, s, subj, "subject"))
    rng = _sub_seed(seed, s, subj, i, "image")
    subject = model.subject_name(subj)
    stamp = _timestamp(_sub_seed(seed, s, subj, "date"), i)
    name = f"{subject}#{stamp}"
    organs = _dealt_organs(_sub_seed(seed, s, subj, "organs"), i, state)
    img = simulate_image(s, state, height, width, rng, offsets, organs=organs, mapping=mapping)
    cube_rel = f"{CUBES_DIR}/{name}{SUFFIXES[cube_format]}"
    label_rel = f"{LABELS_DIR}/{name}.npy"
    dtype = "float32" if cube_format == "tivita" else cube_dtype
    write_cube(root / cube_rel, img.cube, fmt=cube_format, dtype=dtype)
    np.save(root / label_rel, img.labels)
    meta = {k: v for k, v in img.meta.items() if k != "organ_params"}
    return {
        "image_name": name,
        "subject": subject,
        "timestamp": stamp,
        "cube_path": cube_rel,
        "label_path": label_rel,
        "camera_id": "sim",
        **meta,
    }


def simulate_dataset(
    out_dir: str | Path,
    species: Sequence[str] = ("pig", "rat", "human"),
    subjects_per_species: Mapping[str, int] | int | None = None,
    images_per_subject: int = 4,
    tissue_states: Sequence[str] | Mapping[str, Sequence[str]] = DEFAULT_STATES,
    height: int = 480,
    width: int = 640,
    seed: int = 0,
    cube_format: str = "b2nd",
    cube_dtype: str = "float16",
    progress: bool | Callable[[int, int], None] = True,
    mapping: LabelMapping = DEFAULT_LABEL_MAPPING,
    workers: int = 1,
) -> Path:
    """Write a complete dataset (cubes, labels, manifest.csv, splits.json) to ``out_dir``.

    Image ``i`` of a subject gets ``tissue_states[i % len(tissue_states)]`` (a mapping gives
    per-species lists), so every subject has physiological and pathological images.
    ``workers`` > 1 simulates images in that many processes (the same bytes as one);
    ``progress`` is True (a tqdm bar), False, or called as ``progress(done, total)``.
    """
    root = Path(out_dir)
    if subjects_per_species is None:
        subjects_per_species = DEFAULT_SUBJECTS
    if isinstance(subjects_per_species, int):
        subjects_per_species = {s: subjects_per_species for s in species}
    for s in species:
        if s not in SPECIES_MODELS:
            raise ValueError(f"unknown species {s!r}")
    jobs = []
    for s in species:
        states = tissue_states[s] if isinstance(tissue_states, Mapping) else tissue_states
        for st in states:
            if st not in TISSUE_STATES:
                raise ValueError(f"unknown tissue state {st!r}")
        for subj in range(int(subjects_per_species.get(s, 0))):
            for i in range(images_per_subject):
                jobs.append((s, subj, i, states[i % len(states)]))
    (root / CUBES_DIR).mkdir(parents=True, exist_ok=True)
    (root / LABELS_DIR).mkdir(parents=True, exist_ok=True)
    parallel = workers > 1 and len(jobs) > 1 and mapping is DEFAULT_LABEL_MAPPING
    work = [
        (root, seed, s, subj, i, state, height, width, cube_format, cube_dtype, None if parallel else mapping)
        for s, subj, i, state in jobs
    ]  # fmt: skip
    bar: Any = None
    if progress is True:
        from tqdm import tqdm

        bar = tqdm(total=len(work), desc="simulate", unit="cube", file=sys.stderr)
    rows: list[dict[str, Any]] = []

    def done(row: dict[str, Any]) -> None:
        rows.append(row)
        if bar is not None:
            bar.update()
        elif callable(progress):
            progress(len(rows), len(work))

    if parallel:
        # Images are independent given their seeds (_sub_seed), so the order of work does not
        # change a byte; rows are put back in job order.
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")  # no forked torch/BLAS thread state
        with ProcessPoolExecutor(min(workers, len(work)), mp_context=ctx) as pool:
            for row in pool.map(_simulate_job, work, chunksize=1):
                done(row)
    else:
        for job in work:
            done(_simulate_job(job))
    if bar is not None:
        bar.close()
    write_manifest(root, rows)
    provenance = {"simulator": SIMULATOR_VERSION, "seed": seed}
    (root / PROVENANCE_NAME).write_text(json.dumps(provenance, sort_keys=True), encoding="utf-8")
    names = [r["image_name"] for r in rows]
    folds = _auto_folds(names, [r["species"] for r in rows], seed)
    if folds:
        write_data_spec(root / SPLITS_NAME, folds)
    return root


def _parse_size(text: str) -> tuple[int, int]:
    try:
        h, w = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must look like 480x640, got {text!r}") from e
    return h, w


def _parse_subjects(text: str) -> dict[str, int] | int:
    if text.isdigit():
        return int(text)
    out: dict[str, int] = {}
    for part in text.split(","):
        key, _, value = part.partition("=")
        if key.strip() not in SPECIES or not value.strip().isdigit():
            raise argparse.ArgumentTypeError(
                f"subjects must look like pig=6,rat=6,human=12: {text!r}"
            )
        out[key.strip()] = int(value)
    return out


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m datasets.simulate", description="Write a simulated XenoBench dataset."
    )
    parser.add_argument("--out", required=True, type=Path, help="output dataset folder")
    parser.add_argument("--size", type=_parse_size, default=(480, 640), help="HxW (480x640)")
    parser.add_argument(
        "--subjects",
        type=_parse_subjects,
        default=dict(DEFAULT_SUBJECTS),
        help="subjects per species: N or pig=6,rat=6,human=12",
    )
    parser.add_argument("--images-per-subject", type=int, default=4)
    parser.add_argument("--species", default="pig,rat,human")
    parser.add_argument(
        "--states",
        default=",".join(DEFAULT_STATES),
        help="tissue states cycled over the images of each subject",
    )
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--format", choices=("b2nd", "npy", "tivita"), default="b2nd")
    parser.add_argument("--dtype", choices=("float16", "float32"), default="float16")
    parser.add_argument("--no-progress", action="store_true")
    parser.add_argument("--workers", type=int, default=1, help="processes simulating images")
    args = parser.parse_args(argv)
    h, w = args.size
    root = simulate_dataset(
        args.out,
        species=tuple(s.strip() for s in args.species.split(",") if s.strip()),
        subjects_per_species=args.subjects,
        images_per_subject=args.images_per_subject,
        tissue_states=tuple(s.strip() for s in args.states.split(",") if s.strip()),
        height=h,
        width=w,
        seed=args.seed,
        cube_format=args.format,
        cube_dtype=args.dtype,
        progress=not args.no_progress,
        workers=args.workers,
    )
    print(f"wrote {root}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

__all__ = [
    "BASE_ORGAN_PARAMS",
    "ORGANS",
    "ORGAN_PARAMS",
    "PROVENANCE_NAME",
    "SIMULATOR_VERSION",
    "PARAM_NAMES",
    "SPECIES_MODELS",
    "SimulatedImage",
    "draw_subject",
    "simulate_dataset",
    "simulate_image",
    "species_organ_params",
]
