"""Who may see which transits, and what of them: the one place that decides it.

A caller's :class:`Visibility` comes from its key (:meth:`Visibility.of`):

- ``admin`` and ``control_room`` see every transit with every field, and every alert;
- an ``officer`` sees the transits whose itinerary includes their office (of
  departure, of transit or of destination), and their alerts;
- a ``partner`` sees the transits whose itinerary includes its country, without the
  private fields (driver, guarantee, thresholds, trader), and no alerts; of a risk
  score, the level, the probability and the reasons but those on what it does not see
  (:data:`PARTNER_WITHHELD_REASONS`), summed into one.

Every reader of transits applies it: the transit list and detail and the routes under
one transit (timeline, track, exports, report, filtered fixes), the alerts (through
their transit; an alert with no transit is seen only by those who see everything) and
the live feed. The rule has two forms, side by side here: an SQL predicate
(:meth:`Visibility.where`) for a query, and a Python test (:meth:`Visibility.sees`)
for the live feed, which reads every truck once and fans out to each client.
``tests/integration/test_visibility.py`` checks that the two agree and that every reader uses them.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any, Literal

from transit.keys import Principal

# What a partner sees of a transit.
PARTNER_FIELDS = (
    "mrn",
    "status",
    "corridor_id",
    "vehicle",
    "seal_ids",
    "office_departure",
    "offices_transit",
    "office_destination",
    "countries",
    "time_limit",
    "declared_at",
    "released_at",
    "arrived_at",
    "closed_at",
    "last_fix",
    "risk",
)
# Kept in a transit's ``details``; shown to those who see everything of it.
PRIVATE_FIELDS = ("driver", "guarantee", "thresholds", "trader")
# Reasons of a risk score a partner is not shown, as it is not shown what they come
# from (the alerts, the rendezvous alerts among them, the trader): their contributions
# are summed into one reason, ``withheld``, so a partner's reasons still add up.
PARTNER_WITHHELD_REASONS = ("alerts", "rendezvous", "trader_incidents")


@dataclass(frozen=True)
class Visibility:
    """What one caller may see: every transit (``all``), or those whose itinerary
    includes one office (``office``) or one country (``country``), ``ref`` naming it."""

    scope: Literal["all", "office", "country"] = "all"
    ref: str | None = None

    @classmethod
    def of(cls, who: Principal) -> Visibility:
        """The visibility of a key's holder."""
        if who.role == "partner":
            return cls("country", who.country)
        if who.role == "officer":
            return cls("office", who.office)
        return cls()

    def sees(self, countries: Collection[str], offices: Collection[str]) -> bool:
        """Whether a transit with this itinerary is visible (the Python form of
        :meth:`where`)."""
        if self.scope == "country":
            return self.ref in countries
        if self.scope == "office":
            return self.ref in offices
        return True

    def where(self, t: str = "t") -> tuple[str, dict[str, Any]]:
        """The SQL form: a predicate on the transit aliased ``t`` and its named
        parameters. A row with no transit (an outer join's NULLs) is seen only by those
        who see everything."""
        if self.scope == "country":
            return f"%(vis_ref)s = ANY({t}.countries)", {"vis_ref": self.ref}
        if self.scope == "office":
            return (
                f"(%(vis_ref)s = {t}.office_departure OR %(vis_ref)s = {t}.office_destination"
                f" OR %(vis_ref)s = ANY({t}.offices_transit))",
                {"vis_ref": self.ref},
            )
        return "true", {}

    @property
    def sees_alerts(self) -> bool:
        """Whether alerts are shown at all (a partner gets notices, not alerts)."""
        return self.scope != "country"

    def redact(self, transit: dict[str, Any], details: dict[str, Any]) -> dict[str, Any]:
        """A transit's fields as this caller may see them; ``details`` are the
        transit's stored details, where the private fields are kept."""
        if self.scope == "country":
            out = {k: transit.get(k) for k in PARTNER_FIELDS}
            out["risk"] = self.redact_risk(out["risk"])
            return out
        return transit | {k: details.get(k) for k in PRIVATE_FIELDS}

    def redact_risk(self, risk: dict[str, Any] | None) -> dict[str, Any] | None:
        """A risk score (``{probability, level, reasons, ...}``) as this caller may see
        it: a partner's reasons leave out :data:`PARTNER_WITHHELD_REASONS`, their
        contributions summed into one reason ``withheld`` (no value, no weight)."""
        if risk is None or self.scope != "country":
            return risk
        kept = [r for r in risk["reasons"] if r["feature"] not in PARTNER_WITHHELD_REASONS]
        hidden = [r for r in risk["reasons"] if r["feature"] in PARTNER_WITHHELD_REASONS]
        if hidden:
            total = round(sum(float(r["contribution"]) for r in hidden), 4)
            kept.append(
                {"feature": "withheld", "value": None, "weight": None, "contribution": total}
            )
        return risk | {"reasons": kept}
