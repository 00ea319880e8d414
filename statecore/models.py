"""The whole canonical state, as tables. Data only: status changes live in lifecycle.py.

What a file holds verbatim (a message object, the session, the configs...) is kept
as JSON *text*, not JSONField: PostgreSQL's jsonb reorders keys, and export must
give back the same keys in the same order, numbers as numbers.
"""

from __future__ import annotations

import json

from django.db import models
from django.db.models import F, Q
from django.db.models.functions import Upper


class Status(models.TextChoices):
    INCOMING = "incoming", "Incoming"
    PENDING_APPROVAL = "pending_approval", "Pending approval"
    APPROVED = "approved", "Approved"
    REJECTED = "rejected", "Rejected"
    SENT = "sent", "Sent"
    FAILED = "failed", "Failed"


# The statuses of a reply someone (or the automation) has dealt with: the history's lists.
HANDLED = (Status.APPROVED, Status.REJECTED, Status.SENT, Status.FAILED)


class Source(models.TextChoices):
    WEB = "web", "Web page"
    ADMIN = "admin", "Admin site"
    API = "api", "Python API"
    COMMAND = "command", "Management command"
    WORKER = "worker", "Sender worker"
    GATEWAY = "gateway", "Gateway"


MAX_ID_LENGTH = 500
# How many messages of a chat its conversation shows (the last ones).
THREAD_SIZE = 20


class MessageQuerySet(models.QuerySet):
    def pending(self) -> MessageQuerySet:
        return self.filter(status=Status.PENDING_APPROVAL)

    def handled(self) -> MessageQuerySet:
        # "Not incoming nor pending" (the same rows, by the status constraint): a
        # condition no status index can serve, so the history walks its own index in
        # order rather than sorting every handled reply (SQLite, without statistics,
        # would take `status IN (...)` to the status indexes and sort).
        return self.exclude(status__in=[Status.INCOMING, Status.PENDING_APPROVAL])

    def counts_per_status(self) -> dict[str, int]:
        """Messages of this queryset per status, every status present (0 when none).
        The whole table's are read from StatusCount (six rows, whatever the volume); a
        filtered queryset's are one GROUP BY over its rows."""
        counts = dict.fromkeys(Status.values, 0)
        if self.query.has_filters():
            counts.update(self.order_by().values_list("status").annotate(n=models.Count("pk")))
        else:
            counts.update(StatusCount.objects.using(self.db).values_list("status", "n"))
        return counts

    def replies(self) -> MessageQuerySet:
        return self.exclude(reply_to="")

    def in_list_order(self) -> MessageQuerySet:
        return self.order_by("position", "pk")

    def thread(self, chat: str, *, limit: int = THREAD_SIZE) -> list[Message]:
        """The last `limit` messages of a chat in both directions, oldest first: what the
        customer wrote and what was answered (drafts, sends, failures, answers from the
        phone). One query, read backwards off the index (chat, timestamp). A rejected
        draft was never said and an undated message has no place: neither is part of it."""
        if not chat:
            return []
        rows = (
            self.filter(chat=chat, timestamp__isnull=False)
            .exclude(status=Status.REJECTED)
            .order_by("-timestamp", "-pk")[:limit]
        )
        return list(reversed(rows))


class Message(models.Model):
    """One message object of one of the six lists of `messages`."""

    message_id = models.CharField("id", max_length=MAX_ID_LENGTH, unique=True)
    # Indexed through the composite indexes below, which all begin with `status`.
    status = models.CharField(max_length=20, choices=Status.choices)
    # Order inside its list: the file's index on import; a nanosecond clock on
    # each later move, so a moved message goes to the end of its new list.
    position = models.BigIntegerField(default=0)

    sender = models.CharField(max_length=200, blank=True, help_text="`from`")
    sender_name = models.CharField(max_length=200, blank=True, help_text="`fromName`")
    author = models.CharField(max_length=200, blank=True)
    recipient = models.CharField(max_length=200, blank=True)
    # Digits of the chat this message belongs to (sender or recipient), to find
    # "the customer wrote again" without parsing the stored objects (index
    # `message_chat_time` below).
    chat = models.CharField(max_length=200, blank=True)
    body = models.TextField(blank=True)
    is_group = models.BooleanField(default=False)
    reply_to = models.CharField(
        max_length=MAX_ID_LENGTH, blank=True, help_text="`original_message_id`"
    )
    timestamp = models.DateTimeField(null=True, blank=True, db_index=True)
    status_updated_at = models.DateTimeField(null=True, blank=True)
    status_changed_by = models.CharField(max_length=150, blank=True)

    # The sender's lease: set by the claim's guarded UPDATE, cleared by a retry.
    claimed_by = models.CharField(max_length=150, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    lease_until = models.DateTimeField(null=True, blank=True)

    raw = models.TextField(help_text="The message object as JSON text, keys in their order.")

    objects = MessageQuerySet.as_manager()

    class Meta:
        permissions = [
            ("review_message", "Can approve, edit, reject and undo drafted replies"),
            ("resolve_failed", "Can retry a failed reply or confirm it was sent"),
            ("reopen_message", "Can put a decided reply back in the queue"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=Status.values), name="message_status_is_known"
            )
        ]
        indexes = [
            models.Index(fields=["status", "position"], name="message_list_order"),
            # The queue's order (oldest draft first, then list order) read straight off
            # the index, and the overdue count a range of it. SQLite walks an ascending
            # index for `timestamp NULLS LAST` too: the dated rows, then the NULL ones.
            models.Index(
                fields=["status", "timestamp", "position", "id"], name="message_queue_order"
            ),
            models.Index(fields=["status", "status_updated_at"], name="message_status_time"),
            models.Index(fields=["chat", "timestamp"], name="message_chat_time"),
            # The admin's list of one status, newest first: a walk, not a sort of the list.
            models.Index(fields=["status", "id"], name="message_status_id"),
            # The replies to a message, and the admin's list of customers' messages (no
            # `reply_to`), newest first, as a walk of its own index.
            models.Index(fields=["reply_to", "id"], name="message_reply_to_id"),
            # Group chats are a few in a hundred: their list, newest first, and the ids the
            # queue's group filter matches drafts against, each off a small index.
            models.Index(fields=["id"], condition=Q(is_group=True), name="message_group_chats"),
            models.Index(
                fields=["message_id"], condition=Q(is_group=True), name="message_group_ids"
            ),
            # And the history's `message_history_order` (and `message_status_history` on
            # PostgreSQL), made per database by migration 0010.
        ]

    def __str__(self) -> str:
        return self.message_id

    @property
    def data(self) -> dict:
        """The stored object as a dict, keys in their order."""
        return json.loads(self.raw)


class StatusCount(models.Model):
    """How many messages each status holds now: the exact figures of the queue's header
    and the overview without a COUNT(*) over a million rows. Kept by database triggers
    (migration 0010) in the transaction of every write to the message table, whoever
    writes it; `manage.py recount_messages` recomputes it from the rows."""

    status = models.CharField(max_length=20, choices=Status.choices, primary_key=True)
    n = models.BigIntegerField(default=0)

    def __str__(self) -> str:
        return f"{self.status}: {self.n}"


class StateRoot(models.Model):
    """The one row holding everything of the file but `messages` and `message_log`.

    Each verbatim part is the JSON text of its value, NULL when the file had no
    such key. The counters and `last_*` timestamps are columns of their own so a
    move can count with one `UPDATE ... SET total = total + 1` (no lost updates).
    """

    key_order = models.TextField(
        default="[]", help_text="Top-level keys in file order (JSON list)."
    )
    message_lists = models.TextField(
        null=True,
        blank=True,
        help_text="Names of the lists inside `messages`, in order (JSON list).",
    )
    session = models.TextField(null=True, blank=True)
    account_info = models.TextField(null=True, blank=True)
    api_endpoint = models.TextField(null=True, blank=True)
    human_in_the_loop = models.TextField(null=True, blank=True)
    watcher_config = models.TextField(null=True, blank=True)
    retry_config = models.TextField(null=True, blank=True)
    statistics = models.TextField(
        null=True,
        blank=True,
        help_text="The statistics object; the columns below override its counters.",
    )
    metadata = models.TextField(null=True, blank=True)
    extra = models.TextField(
        default="{}", help_text="Every other top-level key (legacy lists, unknown keys), in order."
    )

    total_incoming = models.BigIntegerField(null=True, blank=True)
    total_sent = models.BigIntegerField(null=True, blank=True)
    total_failed = models.BigIntegerField(null=True, blank=True)
    total_approved = models.BigIntegerField(null=True, blank=True)
    total_rejected = models.BigIntegerField(null=True, blank=True)
    last_message_received = models.TextField(null=True, blank=True)
    last_message_sent = models.TextField(null=True, blank=True)
    last_updated = models.TextField(null=True, blank=True, help_text="metadata.last_updated (JSON)")

    class Meta:
        permissions = [
            ("import_state", "Can replace the whole state by uploading a file"),
            ("export_state", "Can download the whole state file"),
        ]
        verbose_name = "session and settings"
        verbose_name_plural = "session and settings"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="state_root_is_single")]

    def __str__(self) -> str:
        return "Session and settings"


class LogEntry(models.Model):
    """One entry of `message_log`, the sender's own log, in order of the primary key."""

    raw = models.TextField()
    recipient = models.CharField(max_length=200, blank=True)
    outcome = models.CharField(max_length=20, blank=True, help_text="`status` of the entry")
    logged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "message log entry"
        verbose_name_plural = "message log"

    def __str__(self) -> str:
        return f"{self.outcome} to {self.recipient}"


class AuditEvent(models.Model):
    """Append-only history. `message_id` is a string, not a foreign key: events
    outlive a re-import and a deleted message."""

    message_id = models.CharField(max_length=MAX_ID_LENGTH, blank=True, db_index=True)
    action = models.CharField(max_length=50, db_index=True)
    from_status = models.CharField(max_length=20, blank=True)
    to_status = models.CharField(max_length=20, blank=True)
    actor = models.CharField(max_length=150, db_index=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    note = models.TextField(blank=True)
    detail = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-created_at", "-pk"]
        indexes = [
            # The history's reviewer filter (a name in any case) and the messages each
            # person acted on, read off one index: a year holds a million events.
            models.Index(Upper("actor"), F("action"), F("message_id"), name="audit_actor_messages"),
        ]

    def __str__(self) -> str:
        return f"{self.action} {self.message_id} by {self.actor}"

    def save(self, *args, **kwargs):
        if self.pk is not None and not kwargs.get("force_insert"):
            raise ValueError("audit events are append-only")
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise ValueError("audit events are append-only")


class GatewayEvent(models.Model):
    """A whatsapp-web.js client event forwarded by the gateway (the last few hundred are kept)."""

    event = models.CharField(max_length=30)
    payload = models.TextField(help_text="The event as received (JSON text).")
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at", "-pk"]

    def __str__(self) -> str:
        return self.event


class Heartbeat(models.Model):
    """The last sign of life of a worker (e.g. the sender)."""

    name = models.CharField(max_length=100, unique=True)
    beat_at = models.DateTimeField()
    detail = models.JSONField(default=dict, blank=True)

    def __str__(self) -> str:
        return self.name


class Incident(models.Model):
    """An alert-worthy condition, open until resolved; admins are mailed once per incident."""

    kind = models.CharField(max_length=50)
    opened_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    summary = models.TextField(blank=True)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind"],
                condition=Q(resolved_at__isnull=True),
                name="one_open_incident_per_kind",
            )
        ]

    def __str__(self) -> str:
        return f"{self.kind} since {self.opened_at:%Y-%m-%d %H:%M}"


class GatewayState(models.Model):
    """What the gateway last said about the WhatsApp session, and the QR it showed.

    One row, never exported: `whatsapp_state.json` keeps only its own session
    keys, and a login QR has no business in that file.
    """

    state = models.CharField(max_length=20, default="unknown")
    reason = models.TextField(blank=True)
    code = models.CharField(max_length=100, blank=True, help_text="The gateway's own word for it")
    qr = models.TextField(blank=True)
    pairing_code = models.CharField(max_length=50, blank=True)
    seen_at = models.DateTimeField(null=True, blank=True, help_text="When the gateway last said it")
    qr_seen_at = models.DateTimeField(null=True, blank=True)
    # How many times the same verdict was recorded again (no audit row for a repeat).
    repeats = models.PositiveIntegerField(default=0)
    # A person's "Mark invalid" holds until a person checks again or a new login.
    held_reason = models.TextField(blank=True)
    held_by = models.CharField(max_length=150, blank=True)
    # Receiving: the last poll that worked, and what may have been lost.
    last_poll_at = models.DateTimeField(null=True, blank=True)
    inbound_gap = models.TextField(blank=True)
    inbound_gap_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "gateway state"
        verbose_name_plural = "gateway state"
        constraints = [models.CheckConstraint(condition=Q(pk=1), name="gateway_state_is_single")]
        permissions = [
            ("manage_session", "Can check, re-link, restart and log out the WhatsApp session")
        ]

    def __str__(self) -> str:
        return f"{self.state}: {self.reason}"


class DraftAttempt(models.Model):
    """The assistant's answer for a customer's message that got no draft (yet)."""

    class Outcome(models.TextChoices):
        NO_REPLY = "no_reply", "No reply wanted"
        RETRYING = "retrying", "Drafting failed, will retry"
        FAILED = "failed", "Drafting failed"

    message_id = models.CharField(max_length=MAX_ID_LENGTH, unique=True)
    outcome = models.CharField(max_length=20, choices=Outcome.choices)
    attempts = models.PositiveIntegerField(default=0)
    next_try_at = models.DateTimeField(null=True, blank=True)
    error = models.TextField(blank=True)
    updated_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.message_id}: {self.outcome}"


class WebhookReceipt(models.Model):
    """One item of a gateway's webhook (POST /gateway/webhook), kept for its dedupe key.

    A gateway retries and sometimes delivers twice: an item whose key is stored is
    answered 200 and changes nothing. Kept at least `whatsapp.DEDUPE_WINDOW` (the
    receiving loop prunes older ones); never exported. `payload` is the item with
    every secret dropped."""

    kind = models.CharField(max_length=20, help_text="The gateway kind that sent it")
    dedupe_key = models.CharField(max_length=MAX_ID_LENGTH)
    event = models.CharField(max_length=60, help_text="The gateway's name for the event")
    what = models.CharField(max_length=20, help_text="What it says, in the common model")
    outcome = models.TextField(blank=True, help_text="What was done with it")
    payload = models.TextField(help_text="The item as received, secrets dropped (JSON text)")
    received_at = models.DateTimeField(db_index=True)

    class Meta:
        ordering = ["-received_at", "-pk"]
        constraints = [
            models.UniqueConstraint(fields=["kind", "dedupe_key"], name="webhook_receipt_once")
        ]

    def __str__(self) -> str:
        return f"{self.event} {self.dedupe_key}"


class GatewayMessage(models.Model):
    """A message the gateway says we sent: from a send's own answer, an echo event or a
    read-back. Ties the gateway's id to our reply, so an echo settles an uncertain send
    once (an id already tied to a reply never settles another) and a later delivery
    failure finds its reply. Pruned with the webhook receipts."""

    class Source(models.TextChoices):
        ANSWER = "answer", "The send's answer"
        ECHO = "echo", "Echo event"
        READ_BACK = "read-back", "Read back from the gateway"

    gateway_id = models.CharField(max_length=MAX_ID_LENGTH, unique=True)
    # Our reply's id once it is known to be this message; "" while unmatched.
    reply_id = models.CharField(max_length=MAX_ID_LENGTH, blank=True, db_index=True)
    # Digits of the chat, and the text with its whitespace normalised: what a match compares.
    chat = models.CharField(max_length=200, blank=True)
    text = models.TextField(blank=True)
    # When the gateway says it went out (None when it does not say).
    sent_at = models.DateTimeField(null=True, blank=True)
    source = models.CharField(max_length=20, choices=Source.choices)
    recorded_at = models.DateTimeField(db_index=True)

    class Meta:
        indexes = [models.Index(fields=["chat", "reply_id"], name="gateway_message_chat")]

    def __str__(self) -> str:
        return f"{self.gateway_id} -> {self.reply_id or '(unmatched)'}"


class Mode(models.TextChoices):
    """A chat's mode (`ChatMode`)."""

    # As the setting says: a person decides, unless `human_in_the_loop` is off.
    REVIEW = "review", "Review"
    # Approved at once by the same path as a person's approve, actor "auto".
    AUTO = "auto", "Auto"
    # The assistant is not asked; a draft a script adds is rejected at once, actor "chat off".
    OFF = "off", "Off"


class ChatMode(models.Model):
    """How the drafts of one chat are handled; a chat without a row is in `review`.

    Kept here, not in `whatsapp_state.json` (like users and the audit log): an export
    never carries it and an import never changes it. Changed only by
    `chat_modes.set_mode`, which audits it; enforced by `lifecycle.add_message`."""

    Mode = Mode

    # The chat's digits, as `Message.chat` holds them (`9230...`, a group's `1203...`).
    chat = models.CharField(max_length=200, unique=True)
    mode = models.CharField(max_length=10, choices=Mode.choices, default=Mode.REVIEW)
    updated_at = models.DateTimeField()
    updated_by = models.CharField(max_length=150)

    class Meta:
        ordering = ["chat"]
        permissions = [("set_chat_mode", "Can set a chat's mode")]
        constraints = [
            models.CheckConstraint(condition=Q(mode__in=Mode.values), name="chat_mode_is_known")
        ]

    def __str__(self) -> str:
        return f"{self.chat}: {self.mode}"
