"""The caps every layer keeps, written once (CONTRACT §6). Pure: no I/O.

- Annual caps: the year's payments are ``min(cap, due)``, where ``due`` is
  what the year's claims, this one included, would be paid without the cap;
  a claim pays that less what was paid already, never below 0 (and at most
  what the claim itself may take). Without reversals that is the claim's own
  amount up to the room left under the cap; after a reversal freed room, it
  also pays what the cap had cut from a claim that stands. Basic's annual
  limits, serious illness's F(the year's base) and annual cap, assistance's
  caps, and the backstop (the person's own burden under its cap) all keep it.
- The fund-share cap: basic + serious illness + assistance together at most
  ``fund_share_cap`` percent of the claim's total; a layer may take what the
  layers before it left of that.
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from medsettle.money import ZERO, pct, share, yuan


def within_annual_caps(due: Decimal, paid: Decimal, caps: Iterable[Decimal | None] = (),
                       most: Decimal | None = None) -> Decimal:
    """What a claim pays: ``min(due, *caps) - paid``, at most ``most``, never below 0
    (a cap of ``None`` caps nothing)."""
    year = due
    for cap in caps:
        if cap is not None:
            year = min(year, cap)
    owed = year - paid
    return max(ZERO, owed if most is None else min(owed, most))


def fund_share_room(cap: Decimal | None, total: Decimal, *earlier: Decimal) -> Decimal | None:
    """What the fund-share cap (``cap`` percent of ``total``) leaves a layer
    after the ``earlier`` layers' amounts, never below 0; ``None``: no such cap."""
    if cap is None:
        return None
    room = share(total, cap)
    for amount in earlier:
        room -= amount
    return max(ZERO, room)


def fund_share_note(cap: Decimal, room: Decimal) -> str:
    """The explanation of a layer the fund-share cap cut to ``room``."""
    return f"各项基金合计不超过总费用的 {pct(cap)}，本次至多 {yuan(room)} 元"
