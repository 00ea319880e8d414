from django.urls import path

from . import (
    chat_mode_views,
    history_views,
    overview_views,
    queue_views,
    session_views,
    statefile_views,
)

app_name = "approvals"

urlpatterns = [
    path("", overview_views.overview, name="overview"),
    path("queue/", queue_views.queue_page, name="queue"),
    path("queue/poll/", queue_views.queue_poll, name="queue-poll"),
    path("queue/bulk/", queue_views.bulk, name="bulk"),
    path("queue/<int:pk>/", queue_views.card, name="card"),
    path("queue/<int:pk>/approve/", queue_views.approve, name="approve"),
    path("queue/<int:pk>/edit/", queue_views.edit, name="edit"),
    path("queue/<int:pk>/reject/", queue_views.reject, name="reject"),
    path("queue/<int:pk>/undo/", queue_views.undo, name="undo"),
    path("queue/<int:pk>/chat-mode/", chat_mode_views.queue_chat_mode, name="chat-mode"),
    path("queue/<int:pk>/thread/", queue_views.thread, name="thread"),
    path("history/", history_views.history_page, name="history"),
    path("history/<int:pk>/", history_views.history_entry, name="history-entry"),
    path("history/<int:pk>/retry/", history_views.retry, name="retry"),
    path("history/<int:pk>/confirm-sent/", history_views.confirm_sent, name="confirm-sent"),
    path("history/<int:pk>/reopen/", history_views.reopen, name="reopen"),
    path(
        "history/<int:pk>/chat-mode/",
        chat_mode_views.history_chat_mode,
        name="history-chat-mode",
    ),
    path("session/", session_views.session_page, name="session"),
    path("session/check/", session_views.check_now, name="session-check"),
    path("session/mark-invalid/", session_views.mark_invalid, name="session-mark-invalid"),
    path("session/pair/", session_views.pair, name="session-pair"),
    path("session/restart/", session_views.restart, name="session-restart"),
    path("session/logout/", session_views.logout, name="session-logout"),
    path("state/download/", statefile_views.download, name="state-download"),
    path("state/upload/", statefile_views.upload, name="state-upload"),
    path("state/upload/confirm/", statefile_views.confirm, name="state-upload-confirm"),
    path("state/upload/cancel/", statefile_views.cancel, name="state-upload-cancel"),
]
