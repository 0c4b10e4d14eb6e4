"""manage.py export_challenge SLUG OUT [--no-data]

Writes a challenge bundle: OUT ending in .yaml is the YAML file alone; any other OUT is a
folder with challenge.yaml and a copy of each dataset under data/ (see docs/organizers.md)."""

from __future__ import annotations

from pathlib import Path

from django.core.management.base import BaseCommand, CommandError

from challenges.bundles import BundleError, export_bundle
from challenges.models import Challenge


class Command(BaseCommand):
    help = "Export a challenge (settings, tasks, phases, pages, data) as a bundle."

    def add_arguments(self, parser) -> None:
        parser.add_argument("slug", help="the challenge's slug")
        parser.add_argument("out", help="a .yaml file, or a folder for the YAML file plus data")
        parser.add_argument(
            "--no-data", action="store_true", help="folder bundle without the dataset copies"
        )

    def handle(self, *args, **opts) -> None:
        challenge = Challenge.objects.filter(slug=opts["slug"]).first()
        if challenge is None:
            raise CommandError(f"no challenge {opts['slug']!r}")
        try:
            path = export_bundle(challenge, Path(opts["out"]), with_data=not opts["no_data"])
        except BundleError as exc:
            raise CommandError(str(exc)) from exc
        self.stdout.write(f"exported {challenge.slug} to {path}")
