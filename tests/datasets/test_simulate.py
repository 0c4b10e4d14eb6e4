from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from datasets.cube_io import read_cube
from datasets.manifest import load_manifest, subject_of, validate_dataset
from datasets.optics import TissueParams, reflectance
from datasets.simulate import (
    ORGANS,
    _sub_seed,
    draw_subject,
    main,
    simulate_dataset,
    simulate_image,
)
from datasets.spectral import WAVELENGTHS_NM, channel_of, l1_normalize
from datasets.splits import read_data_spec, validate_folds

KIDNEY = 6
DATA = Path(__file__).parent / "data"


class LDA:
    """Linear discriminant with shrinkage: the "simple spectral classifier" of the tests."""

    def fit(self, x: np.ndarray, y: np.ndarray, shrink: float = 0.1) -> LDA:
        self.classes = np.unique(y)
        means = np.stack([x[y == c].mean(0) for c in self.classes])
        xc = x - means[np.searchsorted(self.classes, y)]
        cov = xc.T @ xc / len(x)
        cov = (1 - shrink) * cov + shrink * np.trace(cov) / len(cov) * np.eye(len(cov))
        self.w = means @ np.linalg.inv(cov)
        self.b = -0.5 * np.sum(self.w * means, axis=1)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        return self.classes[np.argmax(x @ self.w.T + self.b, axis=1)]


@lru_cache(maxsize=32)
def pixels(
    species: str,
    state: str,
    n_images: int,
    seed: int,
    organs: tuple[str, ...] | None = None,
    phase: str | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """L1-normalised labelled pixels of ``n_images`` 32 x 40 images (cached: reused by tests)."""
    xs, ys = [], []
    for i in range(n_images):
        subject = draw_subject(_sub_seed(seed, species, i // 2, "subject"))
        img = simulate_image(
            species, state, 32, 40, _sub_seed(seed, species, i), subject, organs, phase
        )
        keep = img.labels != 255
        xs.append(l1_normalize(img.cube[keep]))
        ys.append(img.labels[keep])
    return np.concatenate(xs), np.concatenate(ys)


def test_image_is_deterministic_and_plausible() -> None:
    a = simulate_image("pig", "malperfused", 24, 30, seed=5)
    b = simulate_image("pig", "malperfused", 24, 30, seed=5)
    c = simulate_image("pig", "malperfused", 24, 30, seed=6)
    np.testing.assert_array_equal(a.cube, b.cube)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert not np.array_equal(a.cube, c.cube)
    assert a.cube.shape == (24, 30, 100) and a.cube.dtype == np.float32
    assert a.labels.dtype == np.uint8
    assert np.isfinite(a.cube).all() and a.cube.min() >= 0 and a.cube.max() < 3
    assert a.meta["clamped"] and a.meta["phase_type"] in ("ischemia", "stasis")
    assert "kidney" in a.meta["labels_present"]
    assert set(np.unique(a.labels)) <= set(range(12)) | {255}


@pytest.mark.parametrize("size", [(4, 4), (17, 23), (32, 40), (64, 80)])
def test_any_small_size(size: tuple[int, int]) -> None:
    img = simulate_image("human", "icg", *size, seed=1)
    assert img.cube.shape == (*size, 100) and img.labels.shape == size
    assert img.meta["icg_seconds"] > 0


def test_rejects_unknown_inputs() -> None:
    with pytest.raises(ValueError):
        simulate_image("mouse")
    with pytest.raises(ValueError):
        simulate_image("pig", "sick", 8, 8)
    with pytest.raises(ValueError):
        simulate_image("pig", organs=["heart"], height=8, width=8)


def test_physics_hemoglobin_and_icg_features() -> None:
    oxy = reflectance(TissueParams(0.08, 0.95, 0.75, 0.02, 20, 1.0))
    deoxy = reflectance(TissueParams(0.08, 0.05, 0.75, 0.02, 20, 1.0))
    icg = reflectance(TissueParams(0.08, 0.95, 0.75, 0.02, 20, 1.0, icg=30))
    # Deoxy-Hb absorbs at 760 nm; oxy-Hb has its double peak (dips in R) at 540/575 nm.
    assert deoxy[channel_of(760)] < oxy[channel_of(760)]
    assert (
        oxy[channel_of(560)] > oxy[channel_of(540)] and oxy[channel_of(560)] > oxy[channel_of(575)]
    )
    assert np.argmin(icg / oxy) in range(channel_of(780), channel_of(830))
    assert WAVELENGTHS_NM.shape == oxy.shape


def test_hemoglobin_tables_are_prahls() -> None:
    """optics' haemoglobin extinction equals Prahl's tabulation (committed 10 nm samples)."""
    from datasets import optics

    ref = np.loadtxt(DATA / "hemoglobin_reference.csv", delimiter=",", skiprows=6)
    np.testing.assert_array_equal(optics._TABLE_NM, ref[:, 0])
    np.testing.assert_allclose(optics._EPS_HBO2, ref[:, 1], rtol=0, atol=0.05)  # 0.1 rounding
    np.testing.assert_allclose(optics._EPS_HB, ref[:, 2], rtol=0, atol=0.05)


def test_icg_table_is_the_published_spectrum() -> None:
    """optics' ICG shape equals Prahl's tabulated spectrum (committed samples) where that
    table has values (660-1000 nm), normalised to its 810 nm peak."""
    from datasets import optics

    ref = np.loadtxt(DATA / "icg_reference.csv", delimiter=",", skiprows=5)
    ours = dict(zip(optics._TABLE_NM, optics._ICG, strict=True))
    np.testing.assert_allclose(
        [ours[nm] for nm in ref[:, 0]], ref[:, 1] / ref[:, 1].max(), atol=6e-4
    )
    assert ref[np.argmax(ref[:, 1]), 0] == 810.0
    assert WAVELENGTHS_NM[np.argmax(optics.ICG_SHAPE)] == pytest.approx(808.6, abs=3)


def test_dataset_is_valid_deterministic_and_split(tiny_dataset: Path, tmp_path: Path) -> None:
    assert validate_dataset(tiny_dataset) == []
    man = load_manifest(tiny_dataset)
    assert len(man) == (2 + 2 + 3) * 3
    assert set(man.table["species"]) == {"pig", "rat", "human"}
    assert set(man.table["tissue_state"]) == {"physiological", "malperfused", "icg"}
    assert man.image_names[0].startswith("P001#")
    assert any(n.startswith("SPACE_000003#") for n in man.image_names)
    folds = read_data_spec(tiny_dataset / "splits.json")
    assert folds and validate_folds(folds, known_images=man.image_names) == []
    again = simulate_dataset(
        tmp_path / "again",
        subjects_per_species={"pig": 2, "rat": 2, "human": 3},
        images_per_subject=3,
        tissue_states=("physiological", "malperfused", "icg"),
        height=16,
        width=20,
        seed=7,
        progress=False,
    )
    assert (again / "manifest.csv").read_bytes() == (tiny_dataset / "manifest.csv").read_bytes()
    assert (again / "splits.json").read_bytes() == (tiny_dataset / "splits.json").read_bytes()
    name = man.image_names[-1]
    np.testing.assert_array_equal(
        read_cube(again / man.row(name)["cube_path"]), man.read_cube(name)
    )


def test_cli_writes_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "cli"
    opts = "--size 8x10 --subjects pig=1,human=2 --species pig,human --images-per-subject 2"
    opts += " --format npy --dtype float32 --seed 3 --no-progress"
    assert main(["--out", str(out), *opts.split()]) == 0
    man = load_manifest(out)
    assert len(man) == 6
    assert {subject_of(n) for n in man.image_names} == {"P001", "SPACE_000001", "SPACE_000002"}
    assert man.read_cube(man.image_names[0]).dtype == np.float32
    assert validate_dataset(out) == []
    assert "wrote" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["--out", str(out), "--size", "big"])


def test_fact_naive_cross_species_transfer_fails() -> None:
    """Training on pig physiological pixels loses >= 30% relative accuracy on human pixels."""
    x_h, y_h = pixels("human", "physiological", 30, seed=1)
    x_test, y_test = pixels("human", "physiological", 30, seed=2)
    x_p, y_p = pixels("pig", "physiological", 30, seed=3)
    human_to_human = (LDA().fit(x_h, y_h).predict(x_test) == y_test).mean()
    pig_to_human = (LDA().fit(x_p, y_p).predict(x_test) == y_test).mean()
    assert human_to_human > 0.75
    assert pig_to_human <= 0.7 * human_to_human, (human_to_human, pig_to_human)


def _organ_mean_accuracy(pred: np.ndarray, truth: np.ndarray) -> dict[int, float]:
    return {int(c): float((pred[truth == c] == c).mean()) for c in np.unique(truth) if c}


def test_fact_rat_to_human_is_worse_than_pig_to_human() -> None:
    """The study's order (rat -> human 0.34 < pig -> human 0.44; kidney alone 0.002 from rats)
    follows from rat physiology (more blood in liver, kidney and lung), not from an offset."""
    x_test, y_test = pixels("human", "physiological", 30, seed=2)
    acc = {}
    for species in ("pig", "rat"):
        x, y = pixels(species, "physiological", 30, seed=3)
        acc[species] = _organ_mean_accuracy(LDA().fit(x, y).predict(x_test), y_test)
    means = {k: np.mean(list(v.values())) for k, v in acc.items()}
    assert means["rat"] < means["pig"] - 0.03, means
    assert acc["rat"][KIDNEY] < 0.2 < acc["pig"][KIDNEY], (acc["rat"][KIDNEY], acc["pig"][KIDNEY])


def test_fact_relative_kidney_malperfusion_change_transfers() -> None:
    """Mean L1 spectra change alike under kidney clamping in every species (corr > 0.9)."""
    diffs = {}
    for species in ("pig", "rat", "human"):
        x0, y0 = pixels(species, "physiological", 6, seed=4, organs=("kidney",))
        x1, y1 = pixels(species, "malperfused", 6, seed=5, organs=("kidney",), phase="ischemia")
        diffs[species] = x1[y1 == KIDNEY].mean(0) - x0[y0 == KIDNEY].mean(0)
    for a, b in (("pig", "human"), ("rat", "human"), ("pig", "rat")):
        assert np.corrcoef(diffs[a], diffs[b])[0, 1] > 0.9, (a, b)


def test_physiological_model_misses_malperfused_kidney_and_icg() -> None:
    """The story of the demo: a human-physiological model fails on pathological tissue."""
    x, y = pixels("human", "physiological", 30, seed=1)
    clf = LDA().fit(x, y)
    x_p, y_p = pixels("human", "physiological", 12, seed=6, organs=("kidney", "liver"))
    x_m, y_m = pixels("human", "malperfused", 12, seed=6, organs=("kidney", "liver"))
    acc_phys = (clf.predict(x_p[y_p == KIDNEY]) == KIDNEY).mean()
    acc_malp = (clf.predict(x_m[y_m == KIDNEY]) == KIDNEY).mean()
    assert acc_phys > 0.7 and acc_malp < acc_phys - 0.3, (acc_phys, acc_malp)
    x_i, y_i = pixels("human", "icg", 12, seed=7, organs=tuple(ORGANS[:4]))
    x_n, y_n = pixels("human", "physiological", 12, seed=7, organs=tuple(ORGANS[:4]))
    assert (clf.predict(x_i) == y_i).mean() < (clf.predict(x_n) == y_n).mean() - 0.2


def test_fact_pig_malperfusion_augmentation_helps_human_kidney() -> None:
    """Xeno-learning in miniature: per-pair affine changes (diagonal moment matching, the
    closed-form special case of the study's W, b) learned on pig kidney pairs, applied to human
    physiological kidney pixels, let a human classifier recognise clamped human kidney."""
    rng = np.random.default_rng(0)
    x, y = pixels("human", "physiological", 30, seed=1)
    x_m, y_m = pixels("human", "malperfused", 12, seed=6, organs=("kidney", "liver"))
    x_p, y_p = pixels("human", "physiological", 12, seed=6, organs=("kidney", "liver"))
    pairs = []
    for i in range(8):
        a, ya = pixels("pig", "physiological", 1, seed=100 + i, organs=("kidney",))
        b, yb = pixels("pig", "malperfused", 1, seed=200 + i, organs=("kidney",))
        a, b = a[ya == KIDNEY], b[yb == KIDNEY]
        scale = b.std(0) / a.std(0)
        pairs.append((scale, b.mean(0) - a.mean(0) * scale))
    kidney = x[y == KIDNEY]
    augmented = []
    for _ in range(3):
        w_diag, bias = pairs[int(rng.integers(len(pairs)))]
        lerp = rng.random((len(kidney), 1))
        moved = kidney + lerp * (kidney * w_diag + bias - kidney)
        augmented.append(l1_normalize(np.clip(moved, 0, None)))
    baseline = LDA().fit(x, y)
    xeno = LDA().fit(np.concatenate([x, *augmented]), np.concatenate([y] + [y[y == KIDNEY]] * 3))
    malp = y_m == KIDNEY
    acc_base = (baseline.predict(x_m[malp]) == KIDNEY).mean()
    acc_xeno = (xeno.predict(x_m[malp]) == KIDNEY).mean()
    assert acc_xeno > acc_base + 0.3, (acc_base, acc_xeno)
    phys = y_p == KIDNEY
    assert (xeno.predict(x_p[phys]) == KIDNEY).mean() > 0.7  # physiological kidney still fine


@pytest.mark.integration
def test_module_cli_shows_progress(tmp_path: Path) -> None:
    import subprocess
    import sys

    out = tmp_path / "m"
    opts = "--size 8x8 --subjects 1 --species rat --images-per-subject 1".split()
    cmd = [sys.executable, "-m", "datasets.simulate", "--out", str(out), *opts]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr
    assert "simulate" in res.stderr and "cube" in res.stderr  # tqdm bar on stderr
    assert validate_dataset(out) == []


def _organ_absorbance(species: str, organ: str, seed: int, nm: float = 560.0) -> float:
    """Mean absorbance -log10(R) at ``nm`` over an organ's pixels, relative to 800 nm (where
    haemoglobin absorbs little), so exposure and shading cancel."""
    img = simulate_image(species, "physiological", 24, 24, seed, organs=[organ], noise=0.0)
    mask = img.labels == ORGANS.index(organ) + 1
    r = img.cube[mask].astype(np.float64)
    return float(np.mean(np.log10(r[:, channel_of(800)]) - np.log10(r[:, channel_of(nm)])))


def test_species_differences_come_only_from_the_physiology_table(monkeypatch) -> None:
    """No hidden species offsets: with the pig's physiology set to the human one, a pig image
    equals the human image of the same seed; raising the pig's blood volume of one organ
    raises that organ's absorbance at 560 nm in proportion, and changes nothing else."""
    import datasets.simulate as sim

    human = dict(sim.ORGAN_PARAMS["human"])
    monkeypatch.setitem(sim.ORGAN_PARAMS, "pig", dict(human))
    monkeypatch.setattr(
        sim, "_SPECIES_PARAMS", {s: sim.species_organ_params(s) for s in sim.ORGAN_PARAMS}
    )
    a = simulate_image("pig", "physiological", 20, 24, seed=3, organs=["liver", "kidney"])
    b = simulate_image("human", "physiological", 20, 24, seed=3, organs=["liver", "kidney"])
    np.testing.assert_array_equal(a.cube, b.cube)

    base = _organ_absorbance("human", "kidney", seed=4)
    gains = []
    for ratio in (1.5, 2.0, 3.0):
        pig = dict(human, kidney=human["kidney"].with_(blood=human["kidney"].blood * ratio))
        monkeypatch.setitem(sim.ORGAN_PARAMS, "pig", pig)
        monkeypatch.setattr(
            sim, "_SPECIES_PARAMS", {s: sim.species_organ_params(s) for s in sim.ORGAN_PARAMS}
        )
        gains.append(_organ_absorbance("pig", "kidney", seed=4) - base)
        assert _organ_absorbance("pig", "liver", seed=5) == _organ_absorbance(
            "human", "liver", seed=5
        )
    assert 0 < gains[0] < gains[1] < gains[2], gains


def test_species_blood_volume_ratio_shows_at_560_nm() -> None:
    """The literature physiology per species is what separates them: rat organs hold more
    blood (x haemoglobin) than human ones, pig blood has less haemoglobin; absorbance at 560 nm
    follows the organ's blood x haemoglobin ratio between species."""
    from datasets.simulate import species_organ_params

    human = species_organ_params("human")
    for species in ("rat", "pig"):
        params = species_organ_params(species)
        for organ in ("liver", "kidney", "spleen"):
            ratio = params[organ].blood * params[organ].hb / (human[organ].blood * human[organ].hb)
            diff = np.mean([_organ_absorbance(species, organ, s) for s in (1, 2)]) - np.mean(
                [_organ_absorbance("human", organ, s) for s in (1, 2)]
            )
            assert np.sign(diff) == np.sign(np.log(ratio)), (species, organ, ratio, diff)


def test_human_skin_shows_haemoglobin_and_melanin() -> None:
    """Skin: melanin in a thin epidermis above a perfused dermis, so human skin keeps the
    oxy-haemoglobin double dip (542/577 nm) and its reflectance rises towards the red."""
    from datasets.simulate import species_organ_params

    skin = species_organ_params("human")["skin"]
    r = reflectance(skin)
    assert r[channel_of(560)] > r[channel_of(542)] and r[channel_of(560)] > r[channel_of(577)]
    bare = reflectance(skin.with_(melanin=0.0))
    assert (r <= bare + 1e-12).all() and r[0] / bare[0] < r[-1] / bare[-1]
    assert species_organ_params("rat")["skin"].melanin == 0.0  # albino laboratory rats
