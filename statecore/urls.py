from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from statecore import accounts, gateway_views, webhook_views

# django.contrib.auth.urls, but the self-service reset answers 404 unless it is enabled
# (README "Security"); admins set passwords in the admin or with `changepassword`.
account_urls = [
    path("login/", accounts.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("password_change/", auth_views.PasswordChangeView.as_view(), name="password_change"),
    path(
        "password_change/done/",
        auth_views.PasswordChangeDoneView.as_view(),
        name="password_change_done",
    ),
    path("password_reset/", accounts.password_reset, name="password_reset"),
    path(
        "password_reset/done/",
        accounts.reset_view(auth_views.PasswordResetDoneView.as_view()),
        name="password_reset_done",
    ),
    path(
        "reset/<uidb64>/<token>/",
        accounts.reset_view(auth_views.PasswordResetConfirmView.as_view()),
        name="password_reset_confirm",
    ),
    path(
        "reset/done/",
        accounts.reset_view(auth_views.PasswordResetCompleteView.as_view()),
        name="password_reset_complete",
    ),
]

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include(account_urls)),
    path("gateway/events", gateway_views.events, name="gateway-events"),
    path("gateway/webhook", webhook_views.webhook, name="gateway-webhook"),
    path("", include("approvals.urls")),
]
