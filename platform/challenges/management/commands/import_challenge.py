"""manage.py import_challenge BUNDLE [--slug SLUG]

Creates a challenge from a bundle (a YAML file, or a folder with challenge.yaml and data/).
Datasets already registered with the same name and manifest checksum are reused; a folder
bundle's data is registered otherwise. Every problem is printed with its place in the YAML
file and nothing is kept (exit status 1)."""

from __future__ import annotations

from django.core.management.base import BaseCommand, CommandError

from challenges.bundles import BundleError, import_bundle


class Command(BaseCommand):
    help = "Import a challenge bundle written by export_challenge or the organizer page."

    def add_arguments(self, parser) -> None:
        parser.add_argument("bundle", help="challenge.yaml, or a bundle folder")
        parser.add_argument("--slug", default=None, help="import under another slug")

    def handle(self, *args, **opts) -> None:
        try:
            challenge = import_bundle(opts["bundle"], slug=opts["slug"])
        except BundleError as exc:
            raise CommandError(str(exc)) from exc
        n_tasks = challenge.tasks.count()
        self.stdout.write(f"imported challenge {challenge.slug!r} with {n_tasks} task(s)")
