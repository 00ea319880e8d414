"""Checking, marking invalid, re-linking, restarting and logging out the WhatsApp session
now need `statecore.manage_session` instead of bare `is_staff`. Staff who could check
and mark the session invalid before keep that: each staff account of the day gets the
permission (an admin can take it back one by one). Accounts made later get it from an
admin, like every other permission."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

PERMISSION = "manage_session"


def _permission(apps, schema_editor):
    # As in 0001: on a fresh database the permission does not exist yet here.
    config = apps.get_app_config("statecore")
    config.models_module = getattr(config, "models_module", None) or True
    create_permissions(config, verbosity=0, apps=apps, using=schema_editor.connection.alias)
    Permission = apps.get_model("auth", "Permission")
    return Permission.objects.using(schema_editor.connection.alias).get(
        content_type__app_label="statecore", codename=PERMISSION
    )


def give(apps, schema_editor):
    User = apps.get_model("auth", "User")
    staff = User.objects.using(schema_editor.connection.alias).filter(is_staff=True)
    if staff.exists():
        permission = _permission(apps, schema_editor)
        for user in staff:
            user.user_permissions.add(permission)


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0002_reviewers_reopen"),
        ("statecore", "0007_manage_session_permission"),
    ]

    operations = [migrations.RunPython(give, migrations.RunPython.noop)]
