"""A customer's time zones: their `timezone` attribute (an IANA name, on the record or
imported as a column), else those of their phone's number (libphonenumber's geocoding
data: one zone for most numbers, several for a country that spans zones), else the
operator's default (`COMMS_DEFAULT_TIMEZONE`)."""

from __future__ import annotations

import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import phonenumbers
from phonenumbers import timezone as phone_zones

UNKNOWN = "Etc/Unknown"  # what libphonenumber answers when it cannot tell


@functools.lru_cache(maxsize=1024)
def zone(name: str) -> ZoneInfo | None:
    """The zone of this IANA name, or None when there is no such zone."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        return None


@functools.lru_cache(maxsize=65536)
def _phone_zones(number: str) -> tuple[str, ...]:
    try:
        parsed = phonenumbers.parse(number)
    except phonenumbers.NumberParseException:
        return ()
    return tuple(z for z in phone_zones.time_zones_for_number(parsed) if z != UNKNOWN)


def customer_zones(customer: dict, default: str) -> tuple[ZoneInfo, ...]:
    """Where the customer may be: one zone, or every zone their number may be in."""
    named = customer.get("timezone") or (customer.get("vars") or {}).get("timezone")
    found = zone(named) if isinstance(named, str) else None
    if found is not None:
        return (found,)
    zones = tuple(z for z in map(zone, _phone_zones(customer.get("phone") or "")) if z)
    return zones or tuple(z for z in (zone(default),) if z) or (ZoneInfo("UTC"),)
