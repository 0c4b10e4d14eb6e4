"""The error kinds "timeout" and "memory" are now "time_exceeded" and "memory_exceeded"
(evaluator.harness.errors): stored kinds are rewritten both ways."""

from django.db import migrations, models

# Frozen here: a migration must not follow later changes of evaluator.harness.errors.
RENAMED = {"timeout": "time_exceeded", "memory": "memory_exceeded"}
# Every stored kind field: (model, field).
KIND_FIELDS = (("CaseScore", "error_kind"), ("Submission", "failure_kind"))


def _rename(apps, mapping: dict[str, str]) -> None:
    for model_name, field in KIND_FIELDS:
        model = apps.get_model("submissions", model_name)
        for old, new in mapping.items():
            model.objects.filter(**{field: old}).update(**{field: new})


def forwards(apps, schema_editor) -> None:
    _rename(apps, RENAMED)


def backwards(apps, schema_editor) -> None:
    _rename(apps, {new: old for old, new in RENAMED.items()})


class Migration(migrations.Migration):
    dependencies = [
        ("submissions", "0003_text_limits_http_urls"),
    ]

    operations = [
        migrations.AlterField(
            model_name="casescore",
            name="error_kind",
            field=models.CharField(
                blank=True,
                help_text="time_exceeded, memory_exceeded, invalid_output, model_error, ...",
                max_length=30,
            ),
        ),
        migrations.RunPython(forwards, backwards),
    ]
