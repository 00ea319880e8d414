# A mode per chat (review / auto / off), kept in the database, never in the state file.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("statecore", "0007_manage_session_permission"),
    ]

    operations = [
        migrations.CreateModel(
            name="ChatMode",
            fields=[
                (
                    "id",
                    models.BigAutoField(
                        auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                    ),
                ),
                ("chat", models.CharField(max_length=200, unique=True)),
                (
                    "mode",
                    models.CharField(
                        choices=[("review", "Review"), ("auto", "Auto"), ("off", "Off")],
                        default="review",
                        max_length=10,
                    ),
                ),
                ("updated_at", models.DateTimeField()),
                ("updated_by", models.CharField(max_length=150)),
            ],
            options={
                "ordering": ["chat"],
                "permissions": [("set_chat_mode", "Can set a chat's mode")],
                "constraints": [
                    models.CheckConstraint(
                        condition=models.Q(("mode__in", ["review", "auto", "off"])),
                        name="chat_mode_is_known",
                    )
                ],
            },
        ),
    ]
