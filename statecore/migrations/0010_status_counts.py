"""The count table of messages per status, filled from the rows, and the triggers that
keep it in step with every write (statecore/status_counts.py)."""

from django.db import migrations, models


def install(apps, schema_editor) -> None:
    from statecore import status_counts

    status_counts.recount(schema_editor.connection)


def uninstall(apps, schema_editor) -> None:
    from statecore import status_counts

    status_counts.drop_triggers(schema_editor.connection)


class Migration(migrations.Migration):
    dependencies = [
        ("statecore", "0009_search_index"),
    ]

    operations = [
        migrations.CreateModel(
            name="StatusCount",
            fields=[
                (
                    "status",
                    models.CharField(
                        choices=[
                            ("incoming", "Incoming"),
                            ("pending_approval", "Pending approval"),
                            ("approved", "Approved"),
                            ("rejected", "Rejected"),
                            ("sent", "Sent"),
                            ("failed", "Failed"),
                        ],
                        max_length=20,
                        primary_key=True,
                        serialize=False,
                    ),
                ),
                ("n", models.BigIntegerField(default=0)),
            ],
        ),
        migrations.RunPython(install, uninstall),
    ]
