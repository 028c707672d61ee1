"""History in the project database through the Django ORM (SQLite by default, PostgreSQL in
production). ``append`` is one transaction: stream rows for channels this process has not seen yet
(``INSERT ... ON CONFLICT DO NOTHING``) and one bulk insert of the messages."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence

from django.db import transaction
from django.db.models import Count, Max, Min, Sum

from history import db
from history.models import HistoryMessage, HistoryStream
from history.records import HistoryRecord, PurgeResult, ResetResult, Retained, StoredMessage, StreamInfo
from history.store.base import HEALTHY, HistoryStore

_FIELDS = (
    "stream_id",
    "serial",
    "message_id",
    "event_name",
    "published_at_ms",
    "payload",
    "payload_size_bytes",
    "idempotency_key",
)
# Streams this process created or saw; bounded, forgetting only costs a no-op insert.
_KNOWN_LIMIT = 100_000


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _ms(value: dt.datetime | None) -> int | None:
    return None if value is None else int(value.timestamp() * 1000)


class OrmStore(HistoryStore):
    source = "database"

    def __init__(self, using: str = "default") -> None:
        self.using = using
        self._known: set[tuple[str, str, str]] = set()

    def run_unit(self, fn, *args, **kwargs):
        # Outside a request nothing else discards a broken connection (history.db).
        return db.unit_of_work(self.using, fn, *args, **kwargs)

    def _messages(self):
        return HistoryMessage.objects.using(self.using)

    def _streams(self):
        return HistoryStream.objects.using(self.using)

    def append(self, records: Sequence[HistoryRecord]) -> None:
        if not records:
            return
        unseen = {
            (r.app_id, r.channel): r.stream_id
            for r in records
            if (r.app_id, r.channel, r.stream_id) not in self._known
        }
        rows = [
            HistoryMessage(
                app_id=r.app_id,
                channel=r.channel,
                stream_id=r.stream_id,
                serial=r.serial,
                message_id=r.message_id,
                event_name=r.event_name,
                published_at_ms=r.published_at_ms,
                payload=r.payload,
                payload_size_bytes=r.payload_size_bytes,
                idempotency_key=r.idempotency_key,
            )
            for r in sorted(records, key=lambda r: (r.app_id, r.channel, r.serial))
        ]
        with transaction.atomic(using=self.using):
            if unseen:
                now = _now()
                self._streams().bulk_create(
                    [
                        HistoryStream(app_id=a, channel=c, stream_id=s, created_at=now)
                        for (a, c), s in unseen.items()
                    ],
                    ignore_conflicts=True,
                )
            self._messages().bulk_create(rows)
        if len(self._known) > _KNOWN_LIMIT:
            self._known.clear()
        self._known.update((a, c, s) for (a, c), s in unseen.items())

    def stream(self, app_id: str, channel: str) -> StreamInfo | None:
        row = (
            self._streams()
            .filter(app_id=app_id, channel=channel)
            .values_list("stream_id", "state", "reason", "purged_through_serial", "state_changed_at")
            .first()
        )
        if row is None:
            return None
        return StreamInfo(row[0], row[1], row[2], row[3], _ms(row[4]))

    def retained(self, app_id: str, channel: str, stream_id: str) -> Retained:
        agg = (
            self._messages()
            .filter(app_id=app_id, channel=channel, stream_id=stream_id)
            .aggregate(
                n=Count("id"),
                size=Sum("payload_size_bytes"),
                lo=Min("serial"),
                hi=Max("serial"),
                t_lo=Min("published_at_ms"),
                t_hi=Max("published_at_ms"),
            )
        )
        if not agg["n"]:
            return Retained()
        return Retained(agg["n"], agg["size"] or 0, agg["lo"], agg["hi"], agg["t_lo"], agg["t_hi"])

    def select(
        self,
        app_id: str,
        channel: str,
        stream_id: str,
        *,
        min_serial: int | None = None,
        max_serial: int | None = None,
        min_time_ms: int | None = None,
        max_time_ms: int | None = None,
        descending: bool = False,
        limit: int,
    ) -> list[StoredMessage]:
        qs = self._messages().filter(app_id=app_id, channel=channel, stream_id=stream_id)
        if min_serial is not None:
            qs = qs.filter(serial__gte=min_serial)
        if max_serial is not None:
            qs = qs.filter(serial__lte=max_serial)
        if min_time_ms is not None:
            qs = qs.filter(published_at_ms__gte=min_time_ms)
        if max_time_ms is not None:
            qs = qs.filter(published_at_ms__lte=max_time_ms)
        qs = qs.order_by("-serial" if descending else "serial").values_list(*_FIELDS)[:limit]
        return [StoredMessage(*row) for row in qs]

    def purge(
        self,
        app_id: str,
        channel: str,
        *,
        before_serial: int | None = None,
        before_time_ms: int | None = None,
    ) -> PurgeResult:
        with transaction.atomic(using=self.using):
            stream = self._streams().select_for_update().filter(app_id=app_id, channel=channel).first()
            if stream is None:
                return PurgeResult(None, 0, 0)
            doomed = self._messages().filter(app_id=app_id, channel=channel, stream_id=stream.stream_id)
            if before_serial is not None:
                doomed = doomed.filter(serial__lt=before_serial)
            if before_time_ms is not None:
                doomed = doomed.filter(published_at_ms__lt=before_time_ms)
            agg = doomed.aggregate(n=Count("id"), size=Sum("payload_size_bytes"), hi=Max("serial"))
            if agg["n"]:
                doomed.delete()
                if agg["hi"] > stream.purged_through_serial:
                    stream.purged_through_serial = agg["hi"]
                    stream.save(update_fields=["purged_through_serial"])
            # Rows a reset raced with: written under a stream that is no longer current.
            self._messages().filter(app_id=app_id, channel=channel).exclude(
                stream_id=stream.stream_id
            ).delete()
            return PurgeResult(stream.stream_id, agg["n"] or 0, agg["size"] or 0)

    def reset(self, app_id: str, channel: str, new_stream_id: str) -> ResetResult:
        now = _now()
        with transaction.atomic(using=self.using):
            stream = self._streams().select_for_update().filter(app_id=app_id, channel=channel).first()
            # Rows of the new stream may already exist: the sequencer switches first, and publishes
            # on the new stream can commit before this reset. They are kept.
            rows = self._messages().filter(app_id=app_id, channel=channel).exclude(stream_id=new_stream_id)
            previous = stream.stream_id if stream else None
            agg = rows.filter(stream_id=previous).aggregate(n=Count("id"), size=Sum("payload_size_bytes"))
            rows.delete()
            if stream is None:
                self._streams().create(
                    app_id=app_id, channel=channel, stream_id=new_stream_id, created_at=now, reset_at=now
                )
            else:
                stream.stream_id = new_stream_id
                stream.state = HEALTHY
                stream.reason = None
                stream.purged_through_serial = 0
                stream.reset_at = now
                stream.state_changed_at = now
                stream.save()
        self._known.discard((app_id, channel, previous or ""))
        return ResetResult(previous, new_stream_id, agg["n"] or 0, agg["size"] or 0)

    def set_state(self, app_id: str, channel: str, state: str, reason: str | None) -> None:
        self._streams().filter(app_id=app_id, channel=channel).exclude(state=state, reason=reason).update(
            state=state, reason=reason, state_changed_at=_now()
        )

    def find_by_key(self, app_id: str, channel: str, key: str) -> StoredMessage | None:
        info = self.stream(app_id, channel)
        if info is None:
            return None
        row = (
            self._messages()
            .filter(app_id=app_id, channel=channel, stream_id=info.stream_id, idempotency_key=key)
            .order_by("-serial")
            .values_list(*_FIELDS)
            .first()
        )
        return StoredMessage(*row) if row else None

    def channels(self) -> Iterable[tuple[str, str]]:
        return self._streams().values_list("app_id", "channel").order_by("app_id", "channel").iterator()
