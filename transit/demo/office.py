"""What a customs office does for the demo's fleet, over the HTTP API with the demo's
keys: register the trackers, withdraw what an earlier run left open on them, declare
each truck's transit, and release it once its tracker reports and its seals are armed.

Nothing here writes to the database: every step is a request any client could make.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import httpx

from transit.lifecycle import OPEN, Action, State, next_state
from transit.model import make_mrn

if TYPE_CHECKING:
    from firmware_sim.scenario import TruckPlan

OPEN_STATES = sorted(OPEN)
TIME_LIMIT = timedelta(hours=72)
_EPOCH = datetime(2020, 1, 1).timestamp()
_B36 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"


class ApiError(RuntimeError):
    """A request the API refused, with its status and the API's own words."""


def run_mrns(plans: list[TruckPlan], now: datetime) -> list[str]:
    """One new MRN per plan for a run starting at ``now``: the year, the country of
    departure, ``D``, the run's second (six base-36 digits) and the truck's number,
    with the check digit. A later run never reuses an earlier run's MRN."""
    stamp, n = "", max(0, int(now.timestamp() - _EPOCH))
    for _ in range(6):
        n, d = divmod(n, 36)
        stamp = _B36[d] + stamp
    return [make_mrn(now.year, p.countries[0], f"D{stamp}{i:05d}") for i, p in enumerate(plans)]


@dataclass
class Declared:
    """A transit the office declared for a truck, and where its release stands."""

    mrn: str
    plan: TruckPlan
    released: bool = False
    refused: list[str] = field(default_factory=list)  # the API's reasons, last attempt


class CustomsOffice:
    """The demo's customs office: an admin key for devices and withdrawals, one officer
    key per office of departure for declaring and releasing there, and the control
    room's key for watching the transits."""

    def __init__(
        self,
        client: httpx.Client,
        admin_key: str,
        officer_keys: dict[str, str],
        control_key: str,
    ) -> None:
        self.client = client
        self.admin_key = admin_key
        self.officer_keys = officer_keys
        self.control_key = control_key
        self.transits: list[Declared] = []

    def _call(self, method: str, path: str, key: str, body: Any = None) -> httpx.Response:
        return self.client.request(method, path, json=body, headers={"X-API-Key": key})

    def _ok(self, r: httpx.Response, *expected: int) -> Any:
        if r.status_code not in expected:
            raise ApiError(
                f"{r.request.method} {r.request.url.path} answered {r.status_code}: {r.text[:500]}"
            )
        return r.json()

    def register(self, device_ids: list[str]) -> int:
        """Register the trackers not yet registered (unsigned: the simulator does not
        sign). Returns how many were new."""
        known = {
            d["device_id"]
            for d in self._ok(self._call("GET", "/api/v1/devices", self.admin_key), 200)["items"]
        }
        new = [d for d in device_ids if d not in known]
        for dev in new:
            body = {"device_id": dev, "kind": "tracker", "signed": False}
            self._ok(self._call("POST", "/api/v1/devices", self.admin_key, body), 201)
        return len(new)

    def withdraw_earlier(self, device_ids: list[str]) -> int:
        """Cancel, or close with a finding, the transits an earlier run left open on
        these trackers (a tracker follows one transit at a time). Returns how many."""
        ours, n = set(device_ids), 0
        for state in OPEN_STATES:
            listed = self._call(
                "GET", f"/api/v1/transits?status={state}&limit=1000", self.admin_key
            )
            for t in self._ok(listed, 200)["items"]:
                if t["tracker_id"] not in ours:
                    continue
                mrn = t["mrn"]
                if next_state(State(state), Action.CANCEL) is not None:
                    body: dict[str, Any] = {"reason": "withdrawn by a new run of the demo"}
                    r = self._call("POST", f"/api/v1/transits/{mrn}/cancel", self.admin_key, body)
                else:
                    body = {"finding": "withdrawn by a new run of the demo", "incident_code": 6}
                    r = self._call("POST", f"/api/v1/transits/{mrn}/close", self.admin_key, body)
                self._ok(r, 200)
                n += 1
        return n

    def declare(self, plans: list[TruckPlan], mrns: list[str], now: datetime) -> None:
        """Declare every plan's transit (IE015) at its office of departure."""
        limit = (now + TIME_LIMIT).isoformat()
        for plan, mrn in zip(plans, mrns, strict=True):
            body = {
                "mrn": mrn,
                "tracker_id": plan.device_id,
                "seal_ids": plan.seal_ids,
                "corridor_id": plan.corridor_id,
                "office_departure": plan.office_departure,
                "offices_transit": plan.offices_transit,
                "office_destination": plan.office_destination,
                "countries": plan.countries,
                "time_limit": limit,
                "vehicle": f"SIM {plan.device_id}",
            }
            key = self.officer_keys[plan.office_departure]
            self._ok(self._call("POST", "/api/v1/transits", key, body), 201)
            self.transits.append(Declared(mrn, plan))

    def release_ready(self) -> int:
        """Try to release (IE029) each transit not yet released; the API refuses those
        whose tracker has not reported or whose seals are not armed, and says why.
        Returns how many are released in all."""
        for t in self.transits:
            if t.released:
                continue
            key = self.officer_keys[t.plan.office_departure]
            r = self._call("POST", f"/api/v1/transits/{t.mrn}/release", key)
            if r.status_code == 409:
                t.refused = list(r.json()["detail"]["refused"])
                continue
            self._ok(r, 200)
            t.released, t.refused = True, []
        return sum(t.released for t in self.transits)

    def departed(self) -> list[str]:
        """The MRNs whose timeline holds a departure (recorded by ingest)."""
        out = []
        for t in self.transits:
            if not t.released:
                continue
            r = self._call("GET", f"/api/v1/transits/{t.mrn}/events", self.control_key)
            if any(e["kind"] == "departed" for e in self._ok(r, 200)["items"]):
                out.append(t.mrn)
        return out

    def alerts(self) -> list[tuple[str, str]]:
        """(type, MRN) of the alerts raised on this run's transits, newest first."""
        ours = {t.mrn for t in self.transits}
        r = self._call("GET", "/api/v1/alerts?limit=1000", self.control_key)
        return [(a["type"], a["mrn"]) for a in self._ok(r, 200)["items"] if a["mrn"] in ours]
