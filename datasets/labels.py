"""Label mappings: class names <-> indices, the ignore index and raw source labels.

Source masks (htc, Tivita annotations) use values >= 100 for "unlabelled". The study maps the
annotated structures by *name* to 12 classes exactly as htc's study mapping does
(``htc_projects/species/settings_species.py``, ``label_mapping``): the background materials
(drapes, instruments, foil, gloves, ...) are ``background``, ``meso`` is ``small_bowel``, and
only names the mapping leaves out are invalid (the ignore index). A mapping is stored with
challenges in the database, hence the JSON round trip.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import cached_property
from types import MappingProxyType
from typing import Any

import numpy as np

STUDY_CLASSES: tuple[str, ...] = (
    "background",
    "stomach",
    "small_bowel",
    "colon",
    "liver",
    "pancreas",
    "kidney",
    "spleen",
    "omentum",
    "lung",
    "skin",
    "peritoneum",
)


@dataclass(frozen=True)
class LabelMapping:
    """Ordered class names plus the rules for turning raw masks into class-index masks.

    ``class_names[i]`` is the class with index ``i``. ``ignore_index`` marks pixels that are
    not scored (unlabelled or mapped to "unknown"). Raw source values ``>= unlabeled_from``
    are unlabelled. ``aliases`` maps alternative raw names (e.g. ``"small bowel"``) to class
    names.
    """

    class_names: tuple[str, ...]
    ignore_index: int = 255
    unlabeled_from: int = 100
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        names = tuple(self.class_names)
        object.__setattr__(self, "class_names", names)
        object.__setattr__(self, "aliases", MappingProxyType(dict(self.aliases)))
        if not names:
            raise ValueError("a label mapping needs at least one class")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate class names in {names}")
        if not all(isinstance(n, str) and n for n in names):
            raise ValueError("class names must be non-empty strings")
        if not 0 <= self.ignore_index <= 255:
            raise ValueError("ignore_index must fit in uint8 (0..255)")
        if self.ignore_index < len(names):
            raise ValueError(
                f"ignore_index {self.ignore_index} collides with a class index "
                f"(there are {len(names)} classes)"
            )
        if len(names) > self.unlabeled_from:
            raise ValueError("more classes than the unlabelled threshold allows")
        for alias, target in self.aliases.items():
            if target not in names:
                raise ValueError(f"alias {alias!r} points to unknown class {target!r}")

    @property
    def n_classes(self) -> int:
        return len(self.class_names)

    @cached_property
    def name_to_index(self) -> Mapping[str, int]:
        """Class name (or alias) -> class index."""
        table = {name: i for i, name in enumerate(self.class_names)}
        for alias, target in self.aliases.items():
            table.setdefault(alias, table[target])
        return MappingProxyType(table)

    @cached_property
    def index_to_name(self) -> Mapping[int, str]:
        return MappingProxyType(dict(enumerate(self.class_names)))

    def index_of(self, name: str) -> int:
        """Index of ``name``; ``ignore_index`` for names outside the mapping ("unknown")."""
        return self.name_to_index.get(name, self.ignore_index)

    def is_valid_index(self, value: int) -> bool:
        return value == self.ignore_index or 0 <= value < self.n_classes

    def raw_lut(self, raw_names: Mapping[int, str] | None = None) -> np.ndarray:
        """A 256-entry lookup table raw uint8 value -> class index.

        Without ``raw_names`` raw values are already class indices (values outside the
        mapping are ignored). With ``raw_names`` (raw value -> structure name) names are looked
        up in the mapping; unknown names are ignored. Values >= ``unlabeled_from`` are always
        ignored.
        """
        lut = np.full(256, self.ignore_index, dtype=np.uint8)
        if raw_names is None:
            lut[: self.n_classes] = np.arange(self.n_classes, dtype=np.uint8)
        else:
            for raw, name in raw_names.items():
                raw = int(raw)
                if not 0 <= raw <= 255:
                    raise ValueError(f"raw label value {raw} does not fit in uint8")
                lut[raw] = self.index_of(name)
        lut[self.unlabeled_from :] = self.ignore_index
        return lut

    def map_raw(
        self, raw_mask: np.ndarray, raw_names: Mapping[int, str] | None = None
    ) -> np.ndarray:
        """Map a raw mask (any integer dtype) to a uint8 class-index mask."""
        raw = np.asarray(raw_mask)
        if not np.issubdtype(raw.dtype, np.integer) and raw.dtype != np.bool_:
            raise TypeError(f"label masks must be integer, got {raw.dtype}")
        out = np.full(raw.shape, self.ignore_index, dtype=np.uint8)
        inside = (raw >= 0) & (raw <= 255)
        out[inside] = self.raw_lut(raw_names)[raw[inside].astype(np.uint8)]
        return out

    def invalid_values(self, mask: np.ndarray) -> list[int]:
        """Values in an already mapped mask that are neither a class nor the ignore index."""
        values = np.unique(np.asarray(mask))
        return [int(v) for v in values if not self.is_valid_index(int(v))]

    def names_present(self, mask: np.ndarray) -> list[str]:
        """Class names present in a mapped mask, in index order."""
        counts = np.bincount(np.asarray(mask, dtype=np.uint8).ravel(), minlength=256)
        return [n for i, n in enumerate(self.class_names) if counts[i] > 0]

    # --- (de)serialisation --------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "class_names": list(self.class_names),
            "ignore_index": self.ignore_index,
            "unlabeled_from": self.unlabeled_from,
            "aliases": dict(self.aliases),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> LabelMapping:
        unknown = set(data) - {"class_names", "ignore_index", "unlabeled_from", "aliases"}
        if unknown:
            raise ValueError(f"unknown label mapping keys: {sorted(unknown)}")
        if "class_names" not in data:
            raise ValueError("label mapping JSON needs 'class_names'")
        return cls(
            class_names=tuple(data["class_names"]),
            ignore_index=int(data.get("ignore_index", 255)),
            unlabeled_from=int(data.get("unlabeled_from", 100)),
            aliases=dict(data.get("aliases", {})),
        )

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> LabelMapping:
        return cls.from_dict(json.loads(text))

    @classmethod
    def from_names(cls, names: Iterable[str], **kwargs: Any) -> LabelMapping:
        return cls(class_names=tuple(names), **kwargs)


#: Annotated materials that htc's study mapping counts as ``background`` (same order as htc).
BACKGROUND_MATERIALS: tuple[str, ...] = (
    "metal",
    "abdominal_linen",
    "blue_cloth",
    "blanket",
    "white_compress",
    "white_compress_dry",
    "anorganic_artifact",
    "silicone_gloves_light_blue",
    "silicone_gloves_blue",
    "silicone_gloves_white",
    "glove",
    "foil",
    "syringe",
    "stapler",
    "magnets",
    "sutures",
)

#: Raw annotation names that htc's study mapping sends to another class than their own name.
STUDY_NAME_ALIASES: Mapping[str, str] = MappingProxyType(
    {**dict.fromkeys(BACKGROUND_MATERIALS, "background"), "meso": "small_bowel"}
)

DEFAULT_LABEL_MAPPING = LabelMapping(
    class_names=STUDY_CLASSES,
    aliases={
        **STUDY_NAME_ALIASES,
        "small bowel": "small_bowel",
        "small_intestine": "small_bowel",
    },
)
"""The study's 12 classes with htc's name mapping: background materials -> background, meso ->
small_bowel; every other name (e.g. heart, gallbladder, fat_visceral, unlabeled) -> ignore."""
