"""Test users with the roles the reviewer pages know."""

from __future__ import annotations

from django.contrib.auth.models import Group, Permission, User

PASSWORD = "a-long-test-password-1"
REVIEWERS = "Reviewers"


def reviewers_group() -> Group:
    """The group the data migration makes; made again here because transactional
    tests flush the tables (the migration's rows with them)."""
    group, _ = Group.objects.get_or_create(name=REVIEWERS)
    group.permissions.add(
        *Permission.objects.filter(
            content_type__app_label="statecore",
            codename__in=["review_message", "resolve_failed", "reopen_message", "set_chat_mode"],
        )
    )
    return group


def make_user(username: str, *, reviewer: bool = False, staff: bool = False) -> User:
    """A user who can sign in with PASSWORD; a reviewer is in the Reviewers group."""
    user = User.objects.create_user(username, password=PASSWORD, is_staff=staff)
    if reviewer:
        user.groups.add(reviewers_group())
    return user
