from django.contrib import admin
from django.urls import include, path

from statecore import gateway_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("accounts/", include("django.contrib.auth.urls")),
    path("gateway/events", gateway_views.events, name="gateway-events"),
    path("", include("approvals.urls")),
]
