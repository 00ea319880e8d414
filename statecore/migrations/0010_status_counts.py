"""The count table of messages per status, filled from the rows, and the triggers that
keep it in step with every write (statecore/status_counts.py); the history's index."""

from django.db import migrations, models


def install(apps, schema_editor) -> None:
    from statecore import status_counts

    status_counts.recount(schema_editor.connection)


# The history's order (newest decision first, undated last) read off an index, so page
# 400 is a walk of 20,000 entries, not a sort of every handled reply; and per status on
# PostgreSQL, whose (status, status_updated_at) index gives NULLs in the wrong place.
# Not in the model's Meta: SQLite refuses NULLS LAST in an index (its DESC puts NULL last
# already, and its index on (status, status_updated_at) serves a status); SQLite's holds
# `status` too, to skip the other lists without reading their rows.
HISTORY_INDEXES = {
    "sqlite": {"message_history_order": "(status_updated_at DESC, id DESC, status)"},
    "postgresql": {
        "message_history_order": "(status_updated_at DESC NULLS LAST, id DESC)",
        "message_status_history": "(status, status_updated_at DESC NULLS LAST, id DESC)",
    },
}


def add_history_indexes(apps, schema_editor) -> None:
    for name, columns in HISTORY_INDEXES[schema_editor.connection.vendor].items():
        schema_editor.execute(f"CREATE INDEX {name} ON statecore_message {columns}")


def drop_history_indexes(apps, schema_editor) -> None:
    for name in HISTORY_INDEXES[schema_editor.connection.vendor]:
        schema_editor.execute(f"DROP INDEX {name}")


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
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["status", "id"], name="message_status_id"),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("is_group", True)),
                fields=["id"],
                name="message_group_chats",
            ),
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(
                condition=models.Q(("is_group", True)),
                fields=["message_id"],
                name="message_group_ids",
            ),
        ),
        migrations.RunPython(install, uninstall),
        migrations.RunPython(add_history_indexes, drop_history_indexes),
    ]
