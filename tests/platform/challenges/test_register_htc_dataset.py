"""A folder imported from htc's layout (python -m datasets.htc) registers as a dataset."""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command

from datasets.htc import main as htc_import
from tests.datasets.htc_layout import build_htc_dataset

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize("role", ["train", "test"])
def test_register_dataset_command_accepts_an_htc_import(tmp_path, role):
    from challenges.models import Dataset

    build_htc_dataset(tmp_path / "htc")
    dest = tmp_path / "imported"
    assert htc_import([str(tmp_path / "htc"), str(dest), "--no-progress"]) == 0
    out = io.StringIO()
    call_command("register_dataset", str(dest), "--name", "htc", "--role", role, stdout=out)
    assert "registered dataset" in out.getvalue()
    ds = Dataset.objects.get(name="htc")
    assert ds.n_images == 3 and ds.species == ["pig", "rat"]
    assert ds.tissue_states == ["icg", "malperfused", "physiological"]
    labels = {row["image_name"]: row["labels_present"] for row in ds.manifest}
    assert "small_bowel" in labels["P041#2019_12_14_12_00_16"]
    assert labels["R002#2021_03_01_10_00_00"] == []  # imported without the chosen annotation
