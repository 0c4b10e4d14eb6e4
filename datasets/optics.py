"""Tissue optics for the simulator: absorbers, reduced scattering and diffuse reflectance.

Absorption: oxy-/deoxy-haemoglobin (molar extinction from S. Prahl's compilation, 10 nm
samples; whole blood at the tissue's haemoglobin concentration, 150 g/L by default), water,
lipid, protein-bound ICG (Prahl's tabulated spectrum, peak at 810 nm) and melanin (Jacques'
power law) in an epidermis of given thickness above the tissue. Reduced scattering
``mu_s' = a * (lambda / 500 nm) ** -b``. Diffuse reflectance of a semi-infinite homogeneous
medium from the diffusion approximation (Farrell et al. 1992, total reflectance form used by
Jacques), seen through the epidermis twice (Beer-Lambert). The tables are rounded literature
values: good for plausible shapes, not for quantitative spectroscopy.
"""

from __future__ import annotations

from dataclasses import dataclass, fields, replace

import numpy as np

from datasets.spectral import WAVELENGTHS_NM

_TABLE_NM = np.arange(500, 1001, 10, dtype=np.float64)
# Molar extinction coefficients in cm^-1/M (Prahl), 500..1000 nm every 10 nm; a test checks them
# against the committed samples of Prahl's table in tests/datasets/data/hemoglobin_reference.csv.
_EPS_HBO2 = np.array(
    [20932.8, 20035.2, 24202.4, 39956.8, 53236.0, 43016.0, 32613.2, 44496.0, 50104.0, 14400.8,
     3200.0, 1506.0, 942.0, 610.0, 442.0, 368.0, 319.6, 294.0, 277.6, 276.0, 290.0, 314.0,
     348.0, 390.0, 446.0, 518.0, 586.0, 650.0, 710.0, 756.0, 816.0, 864.0, 916.0, 974.0,
     1022.0, 1058.0, 1092.0, 1128.0, 1154.0, 1178.0, 1198.0, 1214.0, 1224.0, 1222.0, 1214.0,
     1204.0, 1186.0, 1162.0, 1128.0, 1080.0, 1024.0]
)  # fmt: skip
_EPS_HB = np.array(
    [20862.0, 25773.6, 31589.6, 39036.4, 46592.0, 53412.0, 53788.0, 45072.0, 37020.0, 28324.4,
     14677.2, 9443.6, 6509.6, 5148.8, 4345.2, 3750.1, 3226.6, 2795.1, 2407.9, 2052.0, 1794.3,
     1540.5, 1325.9, 1102.2, 1115.9, 1405.2, 1548.5, 1311.9, 1075.4, 890.8, 761.7, 717.1,
     693.8, 693.0, 692.4, 691.3, 694.3, 705.8, 726.4, 743.6, 761.8, 774.6, 777.4, 763.8, 693.4,
     602.2, 525.6, 429.3, 359.7, 283.2, 206.8]
)  # fmt: skip
# Water absorption in cm^-1 (Hale & Querry / Kou et al., rounded).
_WATER = np.array(
    [0.0003, 0.0004, 0.0005, 0.0005, 0.0006, 0.0006, 0.0007, 0.0008, 0.0010, 0.0015, 0.0023,
     0.0026, 0.0031, 0.0032, 0.0033, 0.0034, 0.0041, 0.0044, 0.0045, 0.0050, 0.0060, 0.0079,
     0.0102, 0.0158, 0.0255, 0.0262, 0.0261, 0.0241, 0.0222, 0.0208, 0.0196, 0.0207, 0.0246,
     0.0290, 0.0360, 0.0430, 0.0470, 0.0512, 0.0551, 0.0610, 0.0680, 0.0800, 0.1200, 0.1600,
     0.2700, 0.3900, 0.4400, 0.4500, 0.4400, 0.4000, 0.3600]
)  # fmt: skip
# Lipid absorption in cm^-1 (van Veen et al., rounded; band at 930 nm).
_FAT = np.array(
    [0.20, 0.17, 0.15, 0.13, 0.11, 0.10, 0.09, 0.08, 0.07, 0.065, 0.06, 0.055, 0.05, 0.05,
     0.045, 0.045, 0.045, 0.045, 0.05, 0.06, 0.07, 0.08, 0.09, 0.10, 0.10, 0.09, 0.08, 0.07,
     0.06, 0.05, 0.05, 0.05, 0.05, 0.06, 0.07, 0.07, 0.07, 0.07, 0.08, 0.10, 0.14, 0.25, 0.60,
     1.10, 0.80, 0.45, 0.30, 0.25, 0.21, 0.18, 0.15]
)  # fmt: skip

# Protein-bound ICG, relative absorbance (1 at the 810 nm peak). 660-1000 nm: the tabulated ICG
# spectrum of S. Prahl's "Assorted Spectra" (omlc.org/spectra) as redistributed with the
# patato package (BohndiekLab/patato, patato/unmixing/spectra/spectra_files/ICG.csv: molar
# extinction in 1 nm steps from 660 nm, peak 190720 cm^-1/M at 810 nm), sampled every 10 nm
# and normalised; tests/datasets/data/icg_reference.csv holds those samples and a test checks
# this table against them. Below 660 nm, where that table stops, ICG absorbs little: a tail
# extrapolated from the 660-680 nm slope (x 1/1.225 per 10 nm), floored at 0.02. Past 880 nm
# the table is 0. Protein binding moves ICG's 780 nm peak in water to 800-810 nm in blood.
_ICG = np.array(
    [0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02, 0.02,  # 500-590 nm: tail
     0.024, 0.029, 0.036, 0.044, 0.053, 0.065,  # 600-650 nm: tail
     0.080, 0.098, 0.120, 0.148, 0.182, 0.226, 0.281, 0.326, 0.351, 0.363,  # 660-750 nm
     0.394, 0.472, 0.604, 0.788, 0.955, 1.000, 0.902, 0.601, 0.328, 0.155,  # 760-850 nm
     0.054, 0.010, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0]  # 860-1000
)  # fmt: skip

_HB_G_PER_L = 150.0
_HB_G_PER_MOL = 64500.0
_BLOOD_FACTOR = np.log(10.0) * _HB_G_PER_L / _HB_G_PER_MOL  # eps [cm^-1/M] -> mu_a [cm^-1]


def _resample(table: np.ndarray) -> np.ndarray:
    return np.interp(WAVELENGTHS_NM, _TABLE_NM, table)


MU_A_HBO2 = _resample(_EPS_HBO2) * _BLOOD_FACTOR  # whole blood, fully oxygenated
MU_A_HB = _resample(_EPS_HB) * _BLOOD_FACTOR  # whole blood, fully deoxygenated
MU_A_WATER = _resample(_WATER)
MU_A_FAT = _resample(_FAT)
MU_A_MELANIN = 519.0 * (WAVELENGTHS_NM / 500.0) ** -3.5  # per unit volume fraction
# ICG in blood per cm^-1 at its peak (the tabulated shape, resampled to the camera channels).
ICG_SHAPE = _resample(_ICG) / _ICG.max()
# Small wavelength-independent-ish background absorption of tissue (cm^-1).
MU_A_BASE = 0.15 * (WAVELENGTHS_NM / 500.0) ** -1.0
for _arr in (MU_A_HBO2, MU_A_HB, MU_A_WATER, MU_A_FAT, MU_A_MELANIN, ICG_SHAPE, MU_A_BASE):
    _arr.setflags(write=False)


def _clip(x: float, lo: float, hi: float) -> float:
    return float(min(max(x, lo), hi))


@dataclass(frozen=True)
class TissueParams:
    """Optical composition of a tissue (fractions by volume unless noted)."""

    blood: float  # blood volume fraction
    sto2: float  # oxygen saturation of haemoglobin, 0..1
    water: float
    fat: float
    scat_a: float  # reduced scattering at 500 nm, cm^-1
    scat_b: float  # scattering power
    melanin: float = 0.0  # melanosome volume fraction of the epidermis
    icg: float = 0.0  # ICG absorption in blood at the peak, cm^-1
    epidermis_mm: float = 0.0  # epidermis thickness (skin only): melanin lives there
    hb: float = _HB_G_PER_L  # haemoglobin concentration of the blood, g/L

    def with_(self, **changes: float) -> TissueParams:
        return replace(self, **changes)

    def clipped(self) -> TissueParams:
        """Physically valid copy (fractions in range)."""
        return TissueParams(
            blood=_clip(self.blood, 0.002, 0.5),
            sto2=_clip(self.sto2, 0.0, 1.0),
            water=_clip(self.water, 0.0, 0.95),
            fat=_clip(self.fat, 0.0, 0.95),
            scat_a=_clip(self.scat_a, 2.0, 200.0),
            scat_b=_clip(self.scat_b, 0.1, 4.0),
            melanin=_clip(self.melanin, 0.0, 0.5),
            icg=max(float(self.icg), 0.0),
            epidermis_mm=_clip(self.epidermis_mm, 0.0, 0.5),
            hb=_clip(self.hb, 50.0, 250.0),
        )

    def as_array(self) -> np.ndarray:
        return np.array([getattr(self, f.name) for f in fields(self)], dtype=np.float64)


PARAM_NAMES = tuple(f.name for f in fields(TissueParams))


def _col(p: np.ndarray, name: str) -> np.ndarray:
    return p[:, PARAM_NAMES.index(name)][:, None]


def absorption(p: np.ndarray) -> np.ndarray:
    """mu_a (N, C) in cm^-1 of the tissue below the epidermis, for parameter rows ``p``
    (N, len(PARAM_NAMES)) in :data:`PARAM_NAMES` order."""
    sto2 = _col(p, "sto2")
    blood = _col(p, "blood") * _col(p, "hb") / _HB_G_PER_L
    hb = sto2 * MU_A_HBO2 + (1.0 - sto2) * MU_A_HB
    return (
        blood * hb
        + _col(p, "blood") * _col(p, "icg") * ICG_SHAPE
        + _col(p, "water") * MU_A_WATER
        + _col(p, "fat") * MU_A_FAT
        + MU_A_BASE
    )


def epidermis_transmission(p: np.ndarray) -> np.ndarray:
    """Double-pass Beer-Lambert transmission (N, C) of the melanin-bearing epidermis."""
    depth_cm = _col(p, "epidermis_mm") * 0.1
    return np.exp(-2.0 * _col(p, "melanin") * MU_A_MELANIN * depth_cm)


def reduced_scattering(p: np.ndarray) -> np.ndarray:
    """mu_s' (N, C) in cm^-1."""
    return _col(p, "scat_a") * (WAVELENGTHS_NM / 500.0) ** -_col(p, "scat_b")


def diffuse_reflectance(mu_a: np.ndarray, mu_s: np.ndarray, n_tissue: float = 1.4) -> np.ndarray:
    """Total diffuse reflectance of a semi-infinite medium (diffusion approximation)."""
    r_i = -1.440 / n_tissue**2 + 0.710 / n_tissue + 0.668 + 0.0636 * n_tissue
    big_a = (1.0 + r_i) / (1.0 - r_i)
    albedo = mu_s / (mu_a + mu_s)
    root = np.sqrt(3.0 * (1.0 - albedo))
    return 0.5 * albedo * (1.0 + np.exp(-4.0 / 3.0 * big_a * root)) * np.exp(-root)


def reflectance(params: TissueParams | np.ndarray) -> np.ndarray:
    """Reflectance spectra: (C,) for one TissueParams, (N, C) for an (N, len(PARAM_NAMES))
    parameter array."""
    if isinstance(params, TissueParams):
        return reflectance(params.as_array()[None])[0]
    p = np.atleast_2d(np.asarray(params, dtype=np.float64))
    r = diffuse_reflectance(absorption(p), reduced_scattering(p))
    return r * epidermis_transmission(p)
