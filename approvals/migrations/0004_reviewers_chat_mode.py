"""Reviewers may set a chat's mode (`statecore.set_chat_mode`): put a noisy chat on `off`,
a trusted one on `auto`, from the card or the history. The permission is its own so an
admin can take it from the group (or give it to one person) alone."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Reviewers"
PERMISSION = "set_chat_mode"


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
    Group = apps.get_model("auth", "Group")
    group, _ = Group.objects.using(schema_editor.connection.alias).get_or_create(name=GROUP)
    group.permissions.add(_permission(apps, schema_editor))


def take_back(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    alias = schema_editor.connection.alias
    group = Group.objects.using(alias).filter(name=GROUP).first()
    if group is not None:
        group.permissions.remove(
            *Permission.objects.using(alias).filter(
                content_type__app_label="statecore", codename=PERMISSION
            )
        )


class Migration(migrations.Migration):
    dependencies = [
        ("approvals", "0003_staff_manage_session"),
        ("statecore", "0008_chat_modes"),
    ]

    operations = [migrations.RunPython(give, take_back)]
