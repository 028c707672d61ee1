from django.urls import re_path

from history import views

PREFIX = r"^apps/(?P<app_id>[^/]+)/channels/(?P<channel>[^/]+)/history"

urlpatterns = [
    re_path(rf"{PREFIX}/?$", views.HistoryView.as_view()),
    re_path(rf"{PREFIX}/state/?$", views.HistoryStateView.as_view()),
    re_path(rf"{PREFIX}/reset/?$", views.HistoryResetView.as_view()),
    re_path(rf"{PREFIX}/purge/?$", views.HistoryPurgeView.as_view()),
]
