"""Send windows in the recipient's local time: "08:00-21:00" (may wrap midnight,
"22:00-06:00"); a campaign's and its channel's both apply. A message outside them
waits: its batch closes with the recipient still to send, due when the windows next
open, so no task waits and nothing polls (the runner's heap holds the time). A
customer whose number may be in several zones is sent to only when every one of them
is inside (when no moment is, the first zone decides).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from zoneinfo import ZoneInfo

_WINDOW = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)-([01]\d|2[0-3]):([0-5]\d)$")
LOOK_AHEAD = timedelta(days=2)


@dataclass(frozen=True)
class Window:
    start: time
    end: time

    @classmethod
    def parse(cls, text: str) -> Window:
        """"HH:MM-HH:MM"; ValueError when it is not one, or is empty (start = end)."""
        found = _WINDOW.match(text.strip())
        if found is None:
            raise ValueError(f"a send window is HH:MM-HH:MM, not {text!r}")
        h1, m1, h2, m2 = map(int, found.groups())
        if (h1, m1) == (h2, m2):
            raise ValueError(f"the send window {text!r} is empty")
        return cls(time(h1, m1), time(h2, m2))

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"

    def holds(self, local: time) -> bool:
        if self.start < self.end:
            return self.start <= local < self.end
        return local >= self.start or local < self.end  # wraps midnight

    def next_open(self, now: datetime, zone: ZoneInfo) -> datetime:
        """When the window next opens in `zone` after `now` (aware), as an aware time."""
        local = now.astimezone(zone)
        opening = datetime.combine(local.date(), self.start, tzinfo=zone)
        if opening <= local:
            opening = datetime.combine(local.date() + timedelta(days=1), self.start,
                                       tzinfo=zone)
        return opening


def wait_for(windows: tuple[Window, ...], zones: tuple[ZoneInfo, ...], now: datetime
             ) -> timedelta:
    """How long until this recipient may be sent to (zero: now): inside every window
    (the campaign's, its channel's) in every zone they may be in."""
    def inside(at: datetime) -> bool:
        return all(w.holds(at.astimezone(z).time()) for w in windows for z in zones)

    if inside(now):
        return timedelta(0)
    openings = sorted(w.next_open(now, z) for w in windows for z in zones)
    for at in openings:  # the first moment all hold is one of their openings
        if at - now <= LOOK_AHEAD and inside(at):
            return at - now
    first = zones[0]  # no such moment (zones too far apart): the first zone decides
    for at in sorted(w.next_open(now, first) for w in windows):
        if all(w.holds(at.astimezone(first).time()) for w in windows):
            return at - now
    return windows[0].next_open(now, first) - now
