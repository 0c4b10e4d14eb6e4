"""Tissue parameter images and RGB reconstruction (datasets.parameters).

What is tested:
* the formulas on synthetic absorbance spectra with known answers (ratios of band means,
  second-derivative minima of exact quadratics, the StO2 index and its calibration);
* StO2 on diffusion-model spectra of known oxy/deoxy-haemoglobin fractions
  (datasets.optics): within 6 percentage points for blood volumes of 4-9 % (scattering
  12-40 cm^-1, power 0.8-1.9, water 30-75 %), never decreasing with the true saturation for
  blood volumes of 2-15 %; and on simulated cubes (datasets.simulate, with camera noise and
  texture) the per-organ median within 10 points for organs with 3-12 % blood;
* TWI increases with the water fraction, THI with the blood volume (0.5-8 %), TLI with fat;
* precomputed images (htc's parameter_images/<image>.blosc) are read safely and preferred;
* rgb_image: a flat reflectance is grey, a red spectrum red, shape and dtype.
"""

from __future__ import annotations

import pickle
import time

import blosc2
import numpy as np
import pytest

from datasets import parameters as P
from datasets.htc_blosc import HtcBloscError
from datasets.labels import DEFAULT_LABEL_MAPPING
from datasets.optics import TissueParams, reflectance
from datasets.simulate import simulate_image
from datasets.spectral import N_CHANNELS, WAVELENGTHS_NM

WL = WAVELENGTHS_NM


def spectra_from_absorbance(a: np.ndarray) -> np.ndarray:
    return np.power(10.0, -np.asarray(a, dtype=np.float64)).astype(np.float32)


def band(lo: float, hi: float) -> np.ndarray:
    return (WL >= lo) & (WL <= hi)


def tissue(blood=0.06, sto2=0.7, water=0.7, fat=0.05, scat_a=25.0, scat_b=1.3) -> np.ndarray:
    return TissueParams(blood, sto2, water, fat, scat_a, scat_b).as_array()


def grid_reflectance(rows: list[np.ndarray]) -> np.ndarray:
    return reflectance(np.array(rows)).astype(np.float32)


# --- formulas on synthetic absorbance (known answers) ------------------------------------------
def test_band_ratio_indices_have_the_published_form() -> None:
    a = np.full(N_CHANNELS, 0.5)
    a[band(530, 590)] = 0.5 * 2.15  # THI ratio 2.15
    a[band(785, 825)] = 0.5
    a[band(655, 735)] = 0.4
    a[band(825, 925)] = 0.4 * 0.95  # NIR ratio 0.95 (825 nm is in both NIR ranges' edges)
    a[band(880, 900)] = 0.2
    a[band(955, 980)] = 0.2 * 1.2  # TWI ratio 1.2
    a[band(785, 825)] = 0.5
    out = P.parameter_images(spectra_from_absorbance(a)[None])
    den = a[band(655, 735)].mean()
    nir_ratio = a[band(825, 925)].mean() / den
    assert out["nir"][0] == pytest.approx((nir_ratio - 0.0) / 1.9, abs=1e-5)
    thi_ratio = a[band(530, 590)].mean() / a[band(785, 825)].mean()
    assert thi_ratio == pytest.approx(2.15)
    assert out["thi"][0] == pytest.approx((2.15 - 1.3) / 1.7, abs=1e-5)
    assert out["ohi"][0] == pytest.approx((2.15 - 1.3) / 3.4, abs=1e-5)
    assert out["ohi"][0] == pytest.approx(out["thi"][0] / 2, abs=1e-6)  # vendor: THI = 2 OHI
    assert out["twi"][0] == pytest.approx((1.2 - 0.4) / 1.6, abs=1e-5)
    for key in P.PARAMETER_NAMES:
        assert out[key].dtype == np.float32 and out[key].shape == (1,)


def test_indices_are_clipped_to_their_range() -> None:
    a = np.full(N_CHANNELS, 0.3)
    a[band(530, 590)] = 3.0  # THI ratio 10 -> 1
    a[band(955, 980)] = 0.01  # TWI ratio far below 0.4 -> 0
    out = P.parameter_images(spectra_from_absorbance(a)[None])
    assert out["thi"][0] == 1.0 and out["ohi"][0] == 1.0 and out["twi"][0] == 0.0


def test_second_derivative_is_exact_for_quadratics() -> None:
    a = 0.3 + 2e-4 * (WL - 700.0) ** 2  # A'' = 4e-4 per nm^2 everywhere
    d = P.second_derivative(a[None], slice(10, 90), float(np.mean(np.diff(WL))))
    np.testing.assert_allclose(d, 4e-4, rtol=1e-9)
    w = P.savgol_second_derivative_weights(5)
    np.testing.assert_allclose(w, np.array([2, -1, -2, -1, 2]) / 7, atol=1e-12)


def _bands(p1: float, p2: float, lipid: float) -> np.ndarray:
    """Absorbance with exact quadratic bands: A'' = -p1 around 580, -p2 around 760, -lipid
    around 930 nm (curvature in 1/nm^2), flat 0.5 elsewhere."""
    a = np.full(N_CHANNELS, 0.5)
    for centre, curv in ((580.0, p1), (760.0, p2), (930.0, lipid)):
        near = np.abs(WL - centre) <= 45
        a[near] = 0.5 + 0.5 * curv * (45**2 - (WL[near] - centre) ** 2)
    return a


def test_sto2_and_tli_from_known_second_derivatives() -> None:
    p1, p2, lipid = 2e-4, 0.15 * 2e-4 * 3, 2e-4  # index = 1 / (1 + 3) = 0.25
    out = P.parameter_images(spectra_from_absorbance(_bands(p1, p2, lipid))[None])
    assert float(P.sto2_index(np.array(-p1), np.array(-p2))) == pytest.approx(0.25)
    assert out["sto2"][0] == pytest.approx(float(P.calibrate_sto2(np.array(0.25))), abs=2e-3)
    assert out["tli"][0] == pytest.approx(lipid / P.TLI_SCALE, abs=2e-3)
    # Equal oxy and weighted deoxy bands: index (1/r1) / (1/r1 + 1/r2) scaled by r2.
    out = P.parameter_images(spectra_from_absorbance(_bands(1e-4, 0.15 * 1e-4, 0))[None])
    assert float(P.calibrate_sto2(np.array(0.5))) == pytest.approx(out["sto2"][0], abs=2e-3)


def test_sto2_calibration_is_monotone_clamped_and_keeps_nan() -> None:
    idx, sat = P.STO2_CALIBRATION
    assert np.all(np.diff(idx) > 0) and sat[0] == 0 and sat[-1] == 1
    np.testing.assert_allclose(P.calibrate_sto2(idx), sat)
    assert P.calibrate_sto2(np.array([-1.0, 2.0])).tolist() == [0.0, 1.0]
    assert np.isnan(P.calibrate_sto2(np.array([np.nan]))[0])


def test_invalid_pixels_are_nan_and_shapes_follow_the_input() -> None:
    r = grid_reflectance([tissue(), tissue(sto2=0.3)]).reshape(1, 2, N_CHANNELS)
    r[0, 1, 7] = np.nan
    out = P.parameter_images(r)
    for key in P.PARAMETER_NAMES:
        assert out[key].shape == (1, 2) and out[key].dtype == np.float32
        assert np.isnan(out[key][0, 1]) and np.isfinite(out[key][0, 0])
        assert 0.0 <= out[key][0, 0] <= 1.0
    flat = P.parameter_images(np.full((3, N_CHANNELS), 0.4, np.float32))
    assert np.isnan(flat["sto2"]).all()  # no haemoglobin bands: undefined, not 0
    with pytest.raises(ValueError, match="100 channels"):
        P.parameter_images(np.ones((2, 50), np.float32))


def test_float16_memory_map_is_read_not_modified(tmp_path) -> None:
    r = grid_reflectance([tissue(sto2=s) for s in np.linspace(0.1, 0.9, 12)]).reshape(3, 4, -1)
    np.save(tmp_path / "c.npy", r.astype(np.float16))
    mm = np.load(tmp_path / "c.npy", mmap_mode="r")
    a = P.parameter_stack(mm)
    b = P.parameter_stack(np.asarray(mm, dtype=np.float32))
    np.testing.assert_array_equal(a, b)
    assert a.shape == (3, 4, 6)


# --- on spectra of known absorbers (diffusion model) -------------------------------------------
SATURATIONS = np.linspace(0.0, 1.0, 21)
SCATTERING = [(a, b) for a in (12.0, 20.0, 30.0, 40.0) for b in (0.8, 1.3, 1.9)]


def _sto2_grid(bloods: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    rows, truth = [], []
    for blood in bloods:
        for a, b in SCATTERING:
            for water in (0.3, 0.75):
                for s in SATURATIONS:
                    rows.append(tissue(blood=blood, sto2=s, water=water, scat_a=a, scat_b=b))
                    truth.append(s)
    est = P.parameter_images(grid_reflectance(rows))["sto2"]
    return est.reshape(-1, SATURATIONS.size), np.array(truth).reshape(-1, SATURATIONS.size)


def test_sto2_is_recovered_within_six_points_for_typical_blood_volumes() -> None:
    est, truth = _sto2_grid((0.04, 0.06, 0.09))
    err = np.abs(est - truth)
    assert err.max() <= 0.06, err.max()
    assert np.median(err) <= 0.03


def test_sto2_never_decreases_with_the_true_saturation() -> None:
    est, _ = _sto2_grid((0.02, 0.04, 0.08, 0.15))
    assert np.all(np.diff(est, axis=1) >= -1e-6)
    assert np.all(est[:, -1] - est[:, 0] > 0.5)  # and spans most of the range


def test_sto2_on_simulated_cubes_with_noise_and_texture() -> None:
    errors = []
    for seed in range(2):
        for species in ("human", "pig", "rat"):
            im = simulate_image(species, height=64, width=80, seed=seed)
            sto2 = P.parameter_images(im.cube)["sto2"]
            for organ, params in im.meta["organ_params"].items():
                mask = im.labels == DEFAULT_LABEL_MAPPING.index_of(organ)
                if mask.sum() >= 40 and 0.03 <= params.blood <= 0.12:
                    errors.append(float(np.nanmedian(sto2[mask])) - params.sto2)
    assert len(errors) >= 10
    assert np.max(np.abs(errors)) <= 0.10, errors
    assert abs(np.mean(errors)) <= 0.05


def test_twi_increases_with_water_thi_with_blood_tli_with_fat() -> None:
    water = P.parameter_images(
        grid_reflectance([tissue(water=w) for w in (0.1, 0.3, 0.5, 0.7, 0.9)])
    )
    assert np.all(np.diff(water["twi"]) > 0)
    blood = P.parameter_images(
        grid_reflectance([tissue(blood=b) for b in (0.005, 0.01, 0.02, 0.04, 0.08)])
    )
    assert np.all(np.diff(blood["thi"]) > 0) and np.all(np.diff(blood["ohi"]) > 0)
    assert blood["ohi"][-1] < 1.0  # the organ scaling does not saturate at 8 % blood
    fat = P.parameter_images(grid_reflectance([tissue(fat=f) for f in (0.0, 0.1, 0.3, 0.6, 0.9)]))
    assert np.all(np.diff(fat["tli"]) > 0) and fat["tli"][-1] > 0.5 > fat["tli"][0]
    sat = P.parameter_images(grid_reflectance([tissue(sto2=s) for s in (0.0, 0.5, 1.0)]))
    assert np.all(np.diff(sat["nir"]) > 0)  # the NIR index follows oxygenation


# --- precomputed images -------------------------------------------------------------------------
def write_htc_dict(path, arrays: dict[str, np.ndarray]) -> None:
    """An htc multi-array .blosc file: pickled {key: (shape, dtype, size)} + blosc buffers."""
    bufs = {
        k: blosc2.compress(np.ascontiguousarray(v).tobytes(), typesize=v.itemsize)
        for k, v in arrays.items()
    }
    header = {k: (v.shape, v.dtype, len(bufs[k])) for k, v in arrays.items()}
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(header, f)
        for k in arrays:
            f.write(bufs[k])


def test_precomputed_images_are_read_and_preferred(tmp_path) -> None:
    cube = grid_reflectance([tissue(sto2=s) for s in np.linspace(0.2, 0.9, 6)]).reshape(2, 3, -1)
    stored = {"StO2": np.full((2, 3), 0.42, np.float32), "TWI": np.full((2, 3), 0.1, np.float64)}
    stored["extra"] = np.zeros((2, 3), np.float32)
    write_htc_dict(P.parameter_images_path(tmp_path, "P001#2020_01_01_00_00_00"), stored)
    loaded = P.load_parameter_images(tmp_path, "P001#2020_01_01_00_00_00")
    assert set(loaded) == {"sto2", "twi"} and loaded["twi"].dtype == np.float32
    assert P.load_parameter_images(tmp_path, "P001#other") is None
    both = P.tissue_parameters(tmp_path, "P001#2020_01_01_00_00_00", cube)
    computed = P.parameter_images(cube)
    assert set(both) == set(P.PARAMETER_NAMES)
    np.testing.assert_array_equal(both["sto2"], np.float32(0.42))  # precomputed preferred
    np.testing.assert_array_equal(both["nir"], computed["nir"])  # missing ones computed
    other = P.tissue_parameters(tmp_path, "P001#other", cube)
    np.testing.assert_array_equal(other["sto2"], computed["sto2"])
    small = P.tissue_parameters(tmp_path, "P001#2020_01_01_00_00_00", cube[:1])
    np.testing.assert_array_equal(small["sto2"], P.parameter_images(cube[:1])["sto2"])


def test_precomputed_file_with_code_in_its_header_is_refused(tmp_path) -> None:
    class Evil:
        def __reduce__(self):
            return (print, ("executed",))

    path = P.parameter_images_path(tmp_path, "P001#x")
    path.parent.mkdir(parents=True)
    path.write_bytes(pickle.dumps({"StO2": Evil()}))
    with pytest.raises(HtcBloscError):
        P.load_parameter_images(tmp_path, "P001#x")


# --- RGB ----------------------------------------------------------------------------------------
def test_flat_reflectance_is_neutral_grey() -> None:
    for level in (0.05, 0.2, 0.5, 0.9):
        rgb = P.rgb_image(np.full((4, 5, N_CHANNELS), level, np.float32))
        assert rgb.shape == (4, 5, 3) and rgb.dtype == np.uint8
        px = rgb[0, 0].astype(int)
        assert px.max() - px.min() <= 2, (level, px)
    assert P.rgb_image(np.ones((1, N_CHANNELS), np.float32)).tolist() == [[255, 255, 255]]
    assert P.rgb_image(np.zeros((1, N_CHANNELS), np.float32)).tolist() == [[0, 0, 0]]
    brighter = P.rgb_image(np.full((1, N_CHANNELS), 0.2, np.float32), exposure=2.0)
    assert brighter[0, 0] > P.rgb_image(np.full((1, N_CHANNELS), 0.2, np.float32))[0, 0]


def test_coloured_spectra_give_their_hue() -> None:
    red = 0.02 + 0.8 * np.exp(-0.5 * ((WL - 640) / 20) ** 2)
    green = 0.02 + 0.8 * np.exp(-0.5 * ((WL - 540) / 15) ** 2)
    rgb = P.rgb_image(np.stack([red, green]).astype(np.float32)).astype(int)
    assert rgb[0, 0] > rgb[0, 1] + 50 and rgb[0, 0] > rgb[0, 2] + 50
    assert rgb[1, 1] > rgb[1, 0] and rgb[1, 1] > rgb[1, 2]
    blood_rich = P.rgb_image(grid_reflectance([tissue(blood=0.1)])).astype(int)[0]
    assert blood_rich[0] > blood_rich[1] and blood_rich[0] > blood_rich[2]  # tissue is red
    bad = np.full((1, N_CHANNELS), np.nan, np.float32)
    assert P.rgb_image(bad).tolist() == [[0, 0, 0]]


def test_colour_matching_functions_match_the_cie_tables() -> None:
    # CIE 1931 2-degree values (x, y, z) at 500, 550, 600, 650 nm; the fit is within ~0.03.
    table = {
        500: (0.0049, 0.3230, 0.2720),
        550: (0.4334, 0.9950, 0.0087),
        600: (1.0622, 0.6310, 0.0008),
        650: (0.2835, 0.1070, 0.0000),
    }
    cmf = P.cie1931_cmf(np.array(list(table)))
    np.testing.assert_allclose(cmf, np.array(list(table.values())), atol=0.04)


def test_a_full_cube_takes_well_under_a_second() -> None:
    cube = simulate_image("pig", height=480, width=640, seed=3).cube
    P.parameter_images(cube)  # warm up
    start = time.perf_counter()
    P.parameter_images(cube)
    P.rgb_image(cube)
    assert time.perf_counter() - start < 3.0  # ~0.3 s here; generous for a loaded CI machine
