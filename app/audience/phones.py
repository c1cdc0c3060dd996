"""Phone numbers: parsed and validated with Google's libphonenumber (`phonenumbers`),
kept in E.164 (`+5511987654321`), the form an SMSC addresses and a sender id is
matched by. A number written without its country code is read in
`COMMS_DEFAULT_REGION` (an ISO 3166 code, default BR)."""

from __future__ import annotations

import phonenumbers

# The embedded SMSC answers numbers ending so as a real one would fail (refused,
# throttled once, undeliverable, held unanswered: `embedded.smsc`); demo customers
# never get one, so only a test that asks for them meets them.
REFUSED, THROTTLED_ONCE, UNDELIVERABLE, HELD = "0001", "0002", "0003", "9999"
SIMULATED = (REFUSED, THROTTLED_ONCE, UNDELIVERABLE, HELD)


def e164(raw: str, region: str = "BR") -> str:
    """The number in E.164; ValueError with the reason when it is not a valid number."""
    try:
        number = phonenumbers.parse(raw, region)
    except phonenumbers.NumberParseException as exc:
        raise ValueError(f"not a phone number: {exc._msg}") from None
    if not phonenumbers.is_valid_number(number):
        raise ValueError("not a valid phone number for its country")
    return phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.E164)


def smpp_address(number: str) -> str:
    """What SMPP carries as an international number (TON 1, NPI 1): digits, no '+'."""
    return number.lstrip("+")
