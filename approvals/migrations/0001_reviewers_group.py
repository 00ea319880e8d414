"""The Reviewers group: may approve, edit, reject and undo drafts, and resolve failed sends."""

from django.contrib.auth.management import create_permissions
from django.db import migrations

GROUP = "Reviewers"
PERMISSIONS = ["review_message", "resolve_failed"]


def make_group(apps, schema_editor):
    # Permissions are made by a post_migrate signal, after every migration has run:
    # on a fresh database they do not exist yet here, so make them now.
    config = apps.get_app_config("statecore")
    # A migration state app config has no models module: create_permissions would skip it.
    config.models_module = getattr(config, "models_module", None) or True
    create_permissions(config, verbosity=0, apps=apps, using=schema_editor.connection.alias)
    Group = apps.get_model("auth", "Group")
    Permission = apps.get_model("auth", "Permission")
    group, _ = Group.objects.using(schema_editor.connection.alias).get_or_create(name=GROUP)
    perms = Permission.objects.using(schema_editor.connection.alias).filter(
        content_type__app_label="statecore", codename__in=PERMISSIONS
    )
    missing = set(PERMISSIONS) - {p.codename for p in perms}
    if missing:
        raise RuntimeError(f"permissions not found: {sorted(missing)}")
    group.permissions.add(*perms)


def remove_group(apps, schema_editor):
    Group = apps.get_model("auth", "Group")
    Group.objects.using(schema_editor.connection.alias).filter(name=GROUP).delete()


class Migration(migrations.Migration):

    dependencies = [
        ("statecore", "0002_permissions"),
        ("auth", "0012_alter_user_first_name_max_length"),
        ("contenttypes", "0002_remove_content_type_name"),
    ]

    operations = [migrations.RunPython(make_group, remove_group)]
