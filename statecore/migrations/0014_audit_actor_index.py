"""An index on the audit log's (upper(actor), action, message_id): the history's reviewer
filter, a name in any case, reads a person's events and the messages they acted on off
it, where a year holds a million events."""

import django.db.models.functions.text
from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("statecore", "0013_search_fold_compatibility_forms"),
    ]

    operations = [
        migrations.AddIndex(
            model_name="auditevent",
            index=models.Index(
                django.db.models.functions.text.Upper("actor"),
                models.F("action"),
                models.F("message_id"),
                name="audit_actor_messages",
            ),
        ),
    ]
