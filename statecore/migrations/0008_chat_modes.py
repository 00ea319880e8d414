# Placeholder kept in the chain so parallel work lands in a fixed order; filled by its issue.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("statecore", "0007_manage_session_permission"),
    ]

    operations = []
