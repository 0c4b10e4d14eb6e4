"""Forms of the organizer pages (and the shared base of the admin forms).

Every form validates through the models' clean() (Task: its TaskSpec; Phase: dates, limits and
test cases against the dataset), so the site, the admin and bundle imports refuse the same
settings with the same messages. The guided forms only offer what a registered dataset holds:
its species and tissue states, its subjects, label presets with default tolerances.
"""

from __future__ import annotations

from dataclasses import dataclass

from django import forms
from django.core.exceptions import NON_FIELD_ERRORS, ValidationError

from datasets.labels import STUDY_CLASSES
from datasets.manifest import SPECIES, TISSUE_STATES
from evaluator.metrics import CASE_METRICS, DEFAULT_NSD_TOLERANCE

from .models import Challenge, Dataset, Phase, Task
from .services import select_cases

METRIC_LABELS = {
    "dsc": "DSC (Dice similarity coefficient)",
    "nsd": "NSD (normalized surface distance)",
}


class BlankWhenEmptyJSONField(forms.JSONField):
    """A JSON box that shows an empty list/object as blank (not an invalid-looking "[]") and
    reads a blank box as ``empty()``; a required field still refuses a blank box."""

    def __init__(self, *, empty=list, **kwargs) -> None:
        self.empty = empty
        super().__init__(**kwargs)

    def prepare_value(self, value):
        if value is None or value == [] or value == {}:
            return ""
        return super().prepare_value(value)

    def to_python(self, value):
        value = super().to_python(value)
        return self.empty() if value is None else value


class ModelValidatedForm(forms.ModelForm):
    """ModelForm whose model-level errors for fields the form does not show go to the top of
    the form (plain Django raises ValueError for them), and whose fields show the form's own
    error only when the form already refused their input."""

    #: model field -> form field that shows its errors (a field edited under another name)
    error_fields: dict[str, str] = {}

    def add_error(self, field, error):
        if field is None and isinstance(error, ValidationError) and hasattr(error, "error_dict"):
            kept: dict[str, list] = {}
            for name, errs in error.error_dict.items():
                name = self.error_fields.get(name, name)
                if name in self._errors and name != NON_FIELD_ERRORS:
                    continue  # the form refused the input; the model saw the old value
                if name == NON_FIELD_ERRORS or name in self.fields:
                    kept.setdefault(name, []).extend(errs)
                else:
                    kept.setdefault(NON_FIELD_ERRORS, []).extend(
                        f"{name}: {msg}" for e in errs for msg in e.messages
                    )
            error = ValidationError(kept)
        super().add_error(field, error)


# --- challenge ---------------------------------------------------------------------------------
class ChallengeForm(ModelValidatedForm):
    class Meta:
        model = Challenge
        fields = ["slug", "title", "summary", "description", "terms", "is_public"]
        labels = {"terms": "Rules and terms", "is_public": "Public"}
        help_texts = {
            "slug": "The challenge's address: /c/<slug>/ (letters, digits, - and _).",
            "terms": "Participants accept these before they can submit or form teams.",
            "is_public": "Listed and readable by everyone; leave off while you set it up.",
        }


# --- task --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class LabelPreset:
    """A label set the guided form offers: class names, scored classes, default tolerance."""

    title: str
    label_names: tuple[str, ...]
    scored_labels: tuple[str, ...] = ()
    tolerance: float = DEFAULT_NSD_TOLERANCE


LABEL_PRESETS: dict[str, LabelPreset] = {
    "study": LabelPreset("the 12 classes of the xeno-learning study, all scored", STUDY_CLASSES),
    "study-kidney": LabelPreset(
        "the 12 study classes, only kidney scored", STUDY_CLASSES, scored_labels=("kidney",)
    ),
}
#: The preset that takes the class names of the chosen dataset.
DATASET_PRESET = "dataset"


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.replace("\n", ",").split(",") if n.strip()]


def _vocabulary(values, label: str, what: str) -> forms.MultipleChoiceField:
    return forms.MultipleChoiceField(
        choices=[(v, v) for v in values],
        widget=forms.CheckboxSelectMultiple,
        label=label,
        error_messages={"required": f"Choose at least one {what}."},
    )


class DatasetChoiceForm(forms.Form):
    """Step 1 of the guided task form: the datasets whose vocabularies the next step offers."""

    train = forms.ModelChoiceField(
        Dataset.objects.filter(role="train"),
        required=False,
        label="Training dataset",
        empty_label="(none: participants bring their own training data)",
        help_text="Served to registered participants; its species and tissue states are the "
        "source choices.",
    )
    test = forms.ModelChoiceField(
        Dataset.objects.filter(role="test"),
        label="Test dataset",
        help_text="The hidden test dataset; its species and tissue states are the target choices.",
    )


class TaskForm(ModelValidatedForm):
    """Step 2 of the guided task form: species and states from the datasets' manifests, a
    label preset with default tolerances; Task.clean() validates the whole (TaskSpec)."""

    label_preset = forms.ChoiceField(label="Label set")
    nsd_tolerances = forms.CharField(
        required=False,
        label="NSD tolerances (pixels)",
        help_text="One number per class in label order, separated by commas; blank: the "
        "preset's default for every class.",
    )
    scored_labels = forms.CharField(
        required=False,
        label="Scored classes",
        help_text="Class names separated by commas; blank: the preset's (all classes).",
    )
    n_bootstrap = forms.IntegerField(
        required=False,
        min_value=1,
        label="Bootstrap samples of the ranking",
        help_text="Blank: the ranking engine's default.",
    )
    primary_metric = forms.ChoiceField(
        choices=[(m, METRIC_LABELS.get(m, m)) for m in CASE_METRICS],
        initial=Task._meta.get_field("primary_metric").default,
        help_text="The ranking's metric; both are computed and shown.",
    )
    error_fields = {"label_names": "label_preset", "ranking_settings": "n_bootstrap"}
    field_order = [
        "slug",
        "title",
        "description",
        "source_species",
        "source_states",
        "target_species",
        "target_states",
        "label_preset",
        "nsd_tolerances",
        "scored_labels",
    ]

    class Meta:
        model = Task
        fields = [
            "slug",
            "title",
            "description",
            "train_dataset",
            "source_species",
            "source_states",
            "target_species",
            "target_states",
            "preprocessing",
            "primary_metric",
            "scored_classes",
            "ignore_index",
            "nsd_tolerances",
            "scored_labels",
        ]
        widgets = {"train_dataset": forms.HiddenInput}

    def __init__(
        self,
        *args,
        challenge: Challenge,
        train: Dataset | None,
        test: Dataset | None,
        **kwargs,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.instance.challenge = challenge
        self.test = test
        self.fields["train_dataset"].queryset = Dataset.objects.filter(role="train")
        self.fields["train_dataset"].required = False
        if train is not None and not self.is_bound:
            self.initial["train_dataset"] = train.pk
        source = train or test
        for name, ds, what in (
            ("source_species", source, "species"),
            ("source_states", source, "tissue_states"),
            ("target_species", test, "species"),
            ("target_states", test, "tissue_states"),
        ):
            full = SPECIES if what == "species" else TISSUE_STATES
            offered = list(getattr(ds, what)) if ds is not None else list(full)
            current = getattr(self.instance, name) or []
            offered += [v for v in current if v not in offered]  # keep an edited task's values
            label = name.replace("_", " ").replace("states", "tissue states")
            self.fields[name] = _vocabulary(
                offered, label, "species" if what == "species" else "tissue state"
            )
        presets = [(k, p.title) for k, p in LABEL_PRESETS.items()]
        ds_names = (test or train).label_names if (test or train) else []
        if ds_names:
            presets.append((DATASET_PRESET, f"the classes of the dataset ({len(ds_names)})"))
        self.dataset_label_names = list(ds_names)
        self.fields["label_preset"].choices = presets
        if not self.is_bound:  # text boxes: "1, 2, 3", never a JSON "[]"
            self.initial["nsd_tolerances"] = ", ".join(
                f"{t:g}" for t in self.instance.nsd_tolerances or []
            )
            self.initial["scored_labels"] = ", ".join(self.instance.scored_labels or [])
        if self.instance.pk is not None and not self.is_bound:
            self.initial["n_bootstrap"] = (self.instance.ranking_settings or {}).get("n_bootstrap")
            self.initial["label_preset"] = self._preset_of(self.instance)
        elif not self.is_bound and ds_names and list(ds_names) != list(STUDY_CLASSES):
            self.initial["label_preset"] = DATASET_PRESET

    def _preset_of(self, task: Task) -> str:
        same = [k for k, p in LABEL_PRESETS.items() if list(p.label_names) == task.label_names]
        for key in same:
            if list(LABEL_PRESETS[key].scored_labels) == list(task.scored_labels):
                return key
        return same[0] if same else DATASET_PRESET

    def preset_names(self, key: str) -> LabelPreset:
        if key == DATASET_PRESET:
            return LabelPreset("dataset", tuple(self.dataset_label_names))
        return LABEL_PRESETS[key]

    def clean_slug(self) -> str:
        slug = self.cleaned_data["slug"]
        if slug == "organize":
            raise ValidationError(
                "'organize' is the address of the organizer pages; choose another"
            )
        return slug

    def clean_nsd_tolerances(self) -> list[float] | str:
        text = self.cleaned_data.get("nsd_tolerances", "")
        values = []
        for part in _names(text):
            try:
                values.append(float(part))
            except ValueError:
                raise ValidationError(f"{part!r} is not a number of pixels") from None
        return values

    def clean_scored_labels(self) -> list[str]:
        return _names(self.cleaned_data.get("scored_labels", ""))

    def clean(self):
        data = super().clean()
        key = data.get("label_preset")
        if key:
            preset = self.preset_names(key)
            self.instance.label_names = list(preset.label_names)
            if "nsd_tolerances" in data and not data["nsd_tolerances"]:
                data["nsd_tolerances"] = [preset.tolerance] * len(preset.label_names)
            if "scored_labels" in data and not data["scored_labels"]:
                data["scored_labels"] = list(preset.scored_labels)
        ranking = dict(self.instance.ranking_settings or {})
        if data.get("n_bootstrap"):
            ranking["n_bootstrap"] = data["n_bootstrap"]
        else:
            ranking.pop("n_bootstrap", None)
        self.instance.ranking_settings = ranking
        return data


# --- phase -------------------------------------------------------------------------------------
class PhaseForm(ModelValidatedForm):
    """A phase of a task: dates, limits, visibility and its test cases, chosen by filters on
    the test dataset's manifest and listed for review before they are saved."""

    case_species = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Cases of species"
    )
    case_states = forms.MultipleChoiceField(
        required=False, widget=forms.CheckboxSelectMultiple, label="Cases in tissue states"
    )
    case_subjects = forms.MultipleChoiceField(
        required=False,
        widget=forms.SelectMultiple(attrs={"size": 8}),
        label="Cases of subjects",
        help_text="None selected: every subject.",
    )
    reviewed_cases = forms.CharField(required=False, widget=forms.HiddenInput)
    error_fields = {"case_ids": "case_species"}

    class Meta:
        model = Phase
        fields = [
            "slug",
            "title",
            "order",
            "test_dataset",
            "opens_at",
            "closes_at",
            "visibility",
            "leaderboard_rule",
            *Phase.LIMIT_FIELDS,
            "show_case_results",
            "show_logs",
        ]
        widgets = {
            "test_dataset": forms.HiddenInput,
            "opens_at": forms.DateTimeInput(
                attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
            ),
            "closes_at": forms.DateTimeInput(
                attrs={"type": "datetime-local"}, format="%Y-%m-%dT%H:%M"
            ),
        }
        labels = {
            "opens_at": "Opens at (UTC)",
            "closes_at": "Closes at (UTC)",
            "wall_seconds": "Wall time (seconds)",
            "memory_mb": "Memory (MB)",
            "cpu_threads": "CPU threads",
            "gpu": "GPU",
            "max_upload_mb": "Largest upload (MB)",
            "show_case_results": "Show participants their per-case results",
            "show_logs": "Show participants their model's log",
            "chunk_size": "Chunk size (cases)",
        }
        help_texts = {
            "closes_at": "Blank: open until you close it. Uploads outside [opens, closes) are "
            "refused with the date."
        }

    def __init__(self, *args, task: Task, dataset: Dataset, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.instance.task = task
        self.dataset = dataset
        self.fields["test_dataset"].queryset = Dataset.objects.filter(role="test")
        self.fields["show_logs"].widget.choices = [
            ("unknown", "default: yes, except in hidden phases"),
            ("true", "yes"),
            ("false", "no"),
        ]
        if not self.is_bound:
            self.initial["test_dataset"] = dataset.pk
        rows = dataset.manifest
        species = sorted({r["species"] for r in rows})
        states = sorted({r["tissue_state"] for r in rows})
        subjects = sorted({str(r["subject"]) for r in rows})
        self.fields["case_species"].choices = [(s, s) for s in species]
        self.fields["case_states"].choices = [(s, s) for s in states]
        self.fields["case_subjects"].choices = [(s, s) for s in subjects]
        saved = [r for r in rows if r["image_name"] in set(self.instance.case_ids or [])]
        if not self.is_bound and saved:  # editing: the filters that reproduce the saved cases
            self.initial["case_species"] = sorted({r["species"] for r in saved})
            self.initial["case_states"] = sorted({r["tissue_state"] for r in saved})
            chosen = sorted({str(r["subject"]) for r in saved})
            self.initial["case_subjects"] = chosen if chosen != subjects else []
        elif not self.is_bound:
            self.initial["case_species"] = [s for s in species if s in task.target_species]
            self.initial["case_states"] = [s for s in states if s in task.target_states]
        self.cases: list[str] | None = None

    def selected_cases(self, data: dict) -> list[str]:
        """The test cases the filters select, in manifest order."""
        cases = select_cases(
            self.dataset, data.get("case_species") or None, data.get("case_states") or None
        )
        subjects = set(data.get("case_subjects") or [])
        if subjects:
            meta = {r["image_name"]: r for r in self.dataset.manifest}
            cases = [c for c in cases if str(meta[c]["subject"]) in subjects]
        return cases

    def clean(self):
        data = super().clean()
        if self.dataset is not None:
            self.cases = self.selected_cases(data)
            self.instance.case_ids = self.cases
        return data

    @property
    def reviewed(self) -> bool:
        """The organizer saw exactly this list of cases before saving it."""
        return self.cases is not None and self.cleaned_data.get("reviewed_cases") == ",".join(
            self.cases
        )


# --- bundles -----------------------------------------------------------------------------------
class BundleUploadForm(forms.Form):
    bundle = forms.FileField(
        label="Challenge bundle (YAML)",
        help_text="A file written by 'Download bundle' or manage.py export_challenge; its "
        "datasets must be registered here with the same manifest checksum.",
    )
