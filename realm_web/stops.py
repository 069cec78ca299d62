"""Stop strings over streamed text (the Python API and the server share it)."""
from __future__ import annotations

from typing import Sequence


class StopFilter:
    """Streams text while holding back any tail that could still become a stop string;
    at the earliest match of any stop string, ends the text there (hit = True)."""

    def __init__(self, stops: Sequence[str]):
        self.stops = [s for s in stops if s]
        self.buf = ""
        self.hit = False

    def push(self, text: str) -> str:
        if not self.stops:
            return text
        self.buf += text
        first = -1
        for s in self.stops:
            i = self.buf.find(s)
            if i >= 0 and (first < 0 or i < first):
                first = i
        if first >= 0:
            self.hit = True
            out, self.buf = self.buf[:first], ""
            return out
        keep = 0
        for s in self.stops:
            for k in range(min(len(s) - 1, len(self.buf)), 0, -1):
                if self.buf.endswith(s[:k]):
                    keep = max(keep, k)
                    break
        out = self.buf[:len(self.buf) - keep]
        self.buf = self.buf[len(self.buf) - keep:]
        return out

    def flush(self) -> str:
        out, self.buf = self.buf, ""
        return out
