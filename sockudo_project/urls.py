from django.contrib import admin
from django.urls import include, path

from realtime import views

urlpatterns = [
    path("", views.landing, name="landing"),
    path("admin/", admin.site.urls),
    path("", include("realtime.api.urls")),
]
