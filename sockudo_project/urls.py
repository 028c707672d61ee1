from django.contrib import admin
from django.urls import include, path

from realtime.api import landing as views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/", admin.site.urls),
    path("", include("realtime.api.urls")),
]
