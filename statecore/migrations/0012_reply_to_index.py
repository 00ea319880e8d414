"""`reply_to`'s own index becomes (reply_to, id): the replies to a message as before, and
the admin's list of customers' messages (no `reply_to`) newest first as a walk of it.

The old index is dropped by name rather than by altering the field: on SQLite Django
alters a field by building the table again, which would drop the triggers of the search
index and the count table (migrations 0009 and 0010) with the old table."""

from django.db import migrations, models

# Django's names for the index `db_index=True` made (and PostgreSQL's LIKE twin of it).
OLD_INDEXES = ("statecore_message_reply_to_5c78a506", "statecore_message_reply_to_5c78a506_like")


class Migration(migrations.Migration):
    dependencies = [
        ("statecore", "0010_status_counts"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.AlterField(
                    model_name="message",
                    name="reply_to",
                    field=models.CharField(
                        blank=True, help_text="`original_message_id`", max_length=500
                    ),
                ),
            ],
            database_operations=[
                migrations.RunSQL(
                    [f"DROP INDEX IF EXISTS {name}" for name in OLD_INDEXES],
                    reverse_sql=[
                        "CREATE INDEX statecore_message_reply_to_5c78a506 "
                        "ON statecore_message (reply_to)"
                    ],
                ),
            ],
        ),
        migrations.AddIndex(
            model_name="message",
            index=models.Index(fields=["reply_to", "id"], name="message_reply_to_id"),
        ),
    ]
