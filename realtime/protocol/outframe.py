"""One encoded outbound frame, shared by every recipient of a broadcast.

A broadcast is encoded once into an ``OutFrame`` per protocol variant; delivering it to a subscriber
is a buffer append of the same WebSocket bytes. Pure wire logic: no I/O, no framework.
"""

from __future__ import annotations

import struct
from typing import Any

from realtime.protocol.filters import message_from_frame
from realtime.protocol.frames import to_v2

_UNSET = object()


class OutFrame:
    """One encoded outbound frame, shared by every recipient; WebSocket bytes built on first use.

    A frame has one text per protocol: ``text`` for V1 (None = not delivered to V1) and ``v2`` for
    V2, given explicitly (messages with V2 metadata) or derived once from the V1 text (the
    ``sockudo:`` spelling of system events). ``v2_only`` frames never reach V1 connections.
    """

    __slots__ = ("text", "_wire", "_v2", "_v2_given", "v2_text", "position", "_view")

    def __init__(self, text: str | None, v2: str | None = None, position: tuple | None = None) -> None:
        self.text = text
        self.position = position  # V2 identity (message_id, stream_id, serial), if it has one
        self._view: Any = _UNSET
        self._wire: bytes | None = None
        self._v2: OutFrame | None = None
        self._v2_given = v2 is not None
        self.v2_text = v2  # the explicit V2 text (shipped to other nodes as is), if any
        if v2 is not None:
            self._v2 = OutFrame(v2, position=position) if v2 != text else self

    @classmethod
    def v2_only(cls, text: str) -> OutFrame:
        return cls(None, text)

    @property
    def view(self) -> Any:
        """What V2 subscription filters see (parsed once per broadcast, only when a filtered
        subscriber asks; None for system frames, which filters never hide)."""
        if self._view is _UNSET:
            text = self.v2_text or self.text
            self._view = message_from_frame(text) if text else None
        return self._view

    @property
    def v2(self) -> OutFrame | None:
        """The frame for V2 connections (None: not delivered to V2)."""
        if not self._v2_given:
            self._v2_given = True
            text = to_v2(self.text) if self.text is not None else None
            self._v2 = self if text == self.text else OutFrame(text)
        return self._v2

    @property
    def wire(self) -> bytes:
        wire = self._wire
        if wire is None:
            payload = self.text.encode()
            size = len(payload)
            if size < 126:
                header = bytes((0x81, size))
            elif size < 65536:
                header = struct.pack("!BBH", 0x81, 126, size)
            else:
                header = struct.pack("!BBQ", 0x81, 127, size)
            wire = self._wire = header + payload
        return wire
