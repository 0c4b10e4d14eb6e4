"""manage.py register_dataset PATH --name NAME --role train|test [--labels a,b,c]

Validates a folder in the datasets format (manifest.csv, cubes/, labels/) and records it;
every problem found is printed and the command exits with status 1."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from challenges.services import RegistrationError, register_dataset


class Command(BaseCommand):
    help = "Register a training or hidden test dataset from a folder in the datasets format."

    def add_arguments(self, parser) -> None:
        parser.add_argument("path", help="folder with manifest.csv, cubes/ and labels/")
        parser.add_argument("--name", required=True, help="display name of the dataset")
        parser.add_argument("--role", required=True, choices=["train", "test"])
        parser.add_argument(
            "--labels", default="", help="comma-separated class names (default: the 12 organs)"
        )

    def handle(self, *args, **opts) -> None:
        labels = [n.strip() for n in opts["labels"].split(",") if n.strip()] or None
        try:
            ds = register_dataset(
                opts["path"], name=opts["name"], role=opts["role"], label_names=labels
            )
        except RegistrationError as exc:
            raise CommandError(f"dataset not registered:\n{exc}") from exc
        self.stdout.write(
            f"registered dataset #{ds.pk} {ds.name!r} ({ds.role}): {ds.n_images} images, "
            f"species {', '.join(ds.species)}, states {', '.join(ds.tissue_states)}, "
            f"manifest sha256 {ds.manifest_sha256[:12]}"
        )
