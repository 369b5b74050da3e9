"""A command's output, kept bounded: the head and tail of a stream of any length, read
from a pipe with timeouts."""

from __future__ import annotations

import os
import select
import time

_DRAIN_S = 0.5                          # reading what is left in the pipe after the end
_CHUNK = 65536


def _truncation_marker(omitted_bytes: int) -> str:
    return f"\n[... output truncated: {omitted_bytes} more bytes ...]\n"


def _decode(data: bytes | bytearray) -> str:
    return bytes(data).decode("utf-8", errors="replace")


class HeadTailBuffer:
    """The first and last ``max_chars`` bytes of a stream of any length: memory stays
    bounded, and ``text()`` shows both ends, where commands print what matters (what
    they did first, and the error they died with)."""

    def __init__(self, max_chars: int) -> None:
        self._max = max_chars
        self._head = bytearray()
        self._tail = bytearray()
        self._gap = False        # whether bytes between head and tail were dropped
        self.total = 0

    def feed(self, data: bytes) -> None:
        self.total += len(data)
        room = max(self._max - len(self._head), 0)
        self._head += data[:room]
        self._tail += data[room:]
        # Trimming only at twice the size keeps the copying amortised.
        if len(self._tail) > 2 * self._max:
            del self._tail[: -self._max]
            self._gap = True

    def skip(self, size: int) -> None:
        """Count ``size`` bytes that were never read (the middle of a large file)."""
        self.total += size
        self._tail.clear()
        self._gap = True

    def text(self) -> tuple[str, bool]:
        """The kept text, at most ``max_chars`` long including the marker; and whether
        anything was cut."""
        if self.total <= self._max:
            return _decode(self._head), False
        # Without a gap the last bytes may reach back into the head.
        tail = self._tail if self._gap else self._head + self._tail
        keep = max(self._max - len(_truncation_marker(self.total)), 0)
        head_size = keep // 2
        tail_size = keep - head_size
        omitted = self.total - head_size - tail_size
        head_text = _decode(self._head[:head_size])
        tail_text = _decode(tail[max(len(tail) - tail_size, 0):])
        return head_text + _truncation_marker(omitted) + tail_text, True


class OutputPipe:
    """The read end of the command's stdout, read with timeouts so that neither a silent
    command nor a full pipe can block the caller."""

    def __init__(self, fd: int, buffer: HeadTailBuffer) -> None:
        self._fd = fd
        self._buffer = buffer
        self._poller = select.poll()   # not select.select: that fails on fds >= 1024
        self._poller.register(fd, select.POLLIN)
        self.is_open = True

    def pump(self, timeout_s: float) -> bool:
        """Read one chunk if it arrives within ``timeout_s``; whether one was read."""
        if not self.is_open:
            time.sleep(timeout_s)
            return False
        if not self._poller.poll(timeout_s * 1000):
            return False
        chunk = os.read(self._fd, _CHUNK)
        if not chunk:
            self.is_open = False
            return False
        self._buffer.feed(chunk)
        return True

    def drain(self) -> None:
        """Read what is already in the pipe, bounded in time because a process that
        escaped every kill (no pids cgroup, and setsid) could keep writing forever."""
        end = time.monotonic() + _DRAIN_S
        while time.monotonic() < end and self.pump(0):
            pass
