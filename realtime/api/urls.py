from django.urls import re_path

from realtime.api import health, history, publish, views

API_PATH_PREFIXES = ("/apps/", "/users/")  # the Pusher-signed API; everything else is the site


def is_api_path(path: str) -> bool:
    return path.startswith(API_PATH_PREFIXES)


CHANNEL = r"(?P<channel>[^/]+)"
HISTORY = r"^apps/(?P<app_id>[^/]+)/channels/(?P<channel>[^/]+)/history"

urlpatterns = [
    re_path(r"^apps/(?P<app_id>[^/]+)/events/?$", publish.events),
    re_path(r"^apps/(?P<app_id>[^/]+)/batch_events/?$", publish.batch_events),
    re_path(r"^apps/(?P<app_id>[^/]+)/channels/?$", views.ChannelsView.as_view()),
    re_path(rf"^apps/(?P<app_id>[^/]+)/channels/{CHANNEL}/?$", views.ChannelView.as_view()),
    re_path(rf"^apps/(?P<app_id>[^/]+)/channels/{CHANNEL}/users/?$", views.ChannelUsersView.as_view()),
    re_path(
        r"^apps/(?P<app_id>[^/]+)/users/(?P<user_id>[^/]+)/terminate_connections/?$",
        views.TerminateConnectionsView.as_view(),
    ),
    re_path(
        r"^apps/(?P<app_id>[^/]+)/users/(?P<user_id>[^/]+)/force_reconnect/?$",
        views.ForceReconnectView.as_view(),
    ),
    # The pusher Python SDK posts here without the /apps/{id} prefix; the app comes from auth_key.
    re_path(r"^users/(?P<user_id>[^/]+)/terminate_connections/?$", views.TerminateConnectionsView.as_view()),
    re_path(r"^live/?$", health.live),
    re_path(r"^up/?$", health.up),
    re_path(r"^up/(?P<app_id>[^/]+)/?$", health.up),
    re_path(r"^usage/?$", health.usage),
    re_path(r"^stats/?$", health.stats),
    re_path(r"^operator/stats/?$", health.stats),
    re_path(r"^metrics/?$", health.prometheus_metrics),
    # Durable history (Protocol V2): page, state, reset, purge.
    re_path(rf"{HISTORY}/?$", history.HistoryView.as_view()),
    re_path(rf"{HISTORY}/state/?$", history.HistoryStateView.as_view()),
    re_path(rf"{HISTORY}/reset/?$", history.HistoryResetView.as_view()),
    re_path(rf"{HISTORY}/purge/?$", history.HistoryPurgeView.as_view()),
]
