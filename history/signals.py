"""Signals for the realtime layer: a stream reset invalidates positions held elsewhere (hot replay
buffers, delta state). Sent from the thread that performed the reset."""

from django.dispatch import Signal

# kwargs: app_id, channel, previous_stream_id, new_stream_id
stream_reset = Signal()
