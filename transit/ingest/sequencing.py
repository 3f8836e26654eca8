"""One device's messages in ``seq`` order, whichever worker received them.

A shared subscription hands a truck's consecutive messages to different workers, so a
worker may hold message 8 while 7 is still on its way through another. The rules must
see a device's messages in the order the device sent them, so each transit keeps a
cursor (the last ``seq`` evaluated) beside its rule state, and :func:`plan` decides,
for the messages a worker has of one device, which are evaluated now, which wait for
their predecessor, and which were dealt with before. Pure: ages are arguments.

The protocol makes this possible: ``seq`` is incremented by one for every telemetry
and seal message, kept across reboots, never reused (docs/protocol.md), and seal
reports travel on the tracker's own topic, so one transit is one device's stream.

Seqs fall in four bands against the cursor:

- at or below ``base``: sent before the transit's rules took the device over (the
  cursor starts from the device's newest stored seq; for a device never heard, from
  its lowest seq once no worker can hold a lower one): stored, no rules (``plain``);
- up to ``last_seq``: evaluated already, so a redelivery is stored again without
  rules (``duplicate``: written once, as before); except a seq in ``skipped``, passed
  over at a gap and never seen: it is evaluated now, late (the event-time rules ignore
  fixes older than those they have seen; its seal report still counts);
- ``last_seq + 1`` and on without a gap: evaluated, in seq order (``evaluate``); a
  second copy of one (held, or twice in a batch) is acknowledged only (``copy``);
- beyond a gap: held (``hold``) until the gap fills, or until the missing message is
  known lost: then the gap is skipped (a lost or refused message must not stall a
  truck) and recorded in ``skipped``.

Known lost: a message beyond the gap has waited ``min_s``, and every ingest worker has
since been drained (nothing received and not committed, nothing left at the broker),
so the missing one is in no worker's hands; or it has waited ``max_s``, whatever the
workers say. Skipping on time alone would be wrong: a worker that lags (a backlog, a
slow machine) still holds the predecessor, and the rules would see the truck's track
with holes (measured: false ``signal_lost`` alerts with 4 workers on 2 cores).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Generic, TypeVar

T = TypeVar("T")

GAP_MIN_S = 2.0  # a gap is skipped no sooner, even with every worker drained
GAP_MAX_S = 20.0  # nor later, whatever the workers say
SKIPPED_KEPT = 256  # gaps remembered per transit; an older one is stored without rules


@dataclass(frozen=True)
class Cursor:
    """How far one transit's messages have been evaluated."""

    last_seq: int | None = None  # None: nothing yet, the first message starts the stream
    base: int | None = None  # at or below: before the rules took the device over
    skipped: tuple[tuple[int, int], ...] = ()  # inclusive ranges passed over at a timeout


@dataclass(frozen=True)
class Waiting(Generic[T]):
    """A message held earlier, beyond a gap: how long it has waited (seconds), and
    whether every ingest worker has been drained since it was held."""

    seq: int
    waited_s: float
    item: T
    drained: bool = False

    def gives_up(self, min_s: float, max_s: float) -> bool:
        """Whether the gap before this message is to be skipped (see the module)."""
        return self.waited_s >= max_s or (self.drained and self.waited_s >= min_s)


@dataclass
class Plan(Generic[T]):
    """What to do with one device's messages."""

    evaluate: list[T] = field(default_factory=list)  # in this order (late ones first)
    hold: list[T] = field(default_factory=list)  # arrived now, beyond a gap
    release: list[int] = field(default_factory=list)  # held seqs done with: delete them
    plain: list[T] = field(default_factory=list)  # store without rules
    duplicate: list[T] = field(default_factory=list)  # evaluated before: store, no rules
    copy: list[T] = field(default_factory=list)  # of one held or in this batch: ack only
    cursor: Cursor = field(default_factory=Cursor)


def _cut(skipped: tuple[tuple[int, int], ...], seq: int) -> tuple[tuple[int, int], ...]:
    """``skipped`` without ``seq``."""
    out: list[tuple[int, int]] = []
    for lo, hi in skipped:
        if lo <= seq <= hi:
            out += [r for r in ((lo, seq - 1), (seq + 1, hi)) if r[0] <= r[1]]
        else:
            out.append((lo, hi))
    return tuple(out)


def plan(
    cursor: Cursor,
    arrived: Sequence[tuple[int, T]],
    held: Sequence[Waiting[T]] = (),
    min_s: float = GAP_MIN_S,
    max_s: float = GAP_MAX_S,
) -> Plan[T]:
    """Decide for one device's messages: ``arrived`` are ``(seq, item)`` in the order
    they came, ``held`` those waiting from before (beyond a gap, under this cursor)."""
    out: Plan[T] = Plan()
    if cursor.last_seq is None:
        # A device never heard before its transit: where its stream starts is known
        # once no worker can hold a lower seq. Until then, everything waits.
        if not any(w.gives_up(min_s, max_s) for w in held):
            out.hold = [item for _, item in arrived]
            out.cursor = cursor
            return out
        start = min([s for s, _ in arrived] + [w.seq for w in held]) - 1
        cursor = Cursor(start, start, cursor.skipped)
    assert cursor.last_seq is not None
    last, base, skipped = cursor.last_seq, cursor.base, cursor.skipped
    late: list[tuple[int, T]] = []
    # seq -> (gives up waiting, item, held before): the candidates beyond the cursor
    ahead: dict[int, tuple[bool, T, bool]] = {}
    for w in held:
        if w.seq <= last:
            out.release.append(w.seq)  # cannot happen under the lock; tidied all the same
        else:
            ahead[w.seq] = (w.gives_up(min_s, max_s), w.item, True)
    for seq, item in arrived:
        if base is not None and seq <= base:
            out.plain.append(item)
        elif seq <= last:
            if any(lo <= seq <= hi for lo, hi in skipped):
                skipped = _cut(skipped, seq)
                late.append((seq, item))
            else:
                out.duplicate.append(item)
        elif seq in ahead:
            out.copy.append(item)  # the one held, or the first in this batch, goes on
        else:
            ahead[seq] = (False, item, False)
    out.evaluate = [item for _, item in sorted(late, key=lambda p: p[0])]
    order = sorted(ahead)
    # Whether a candidate from position k on gives up waiting: then every gap before
    # it is skipped (it has waited as long as any gap before it has lasted).
    beyond = [False] * (len(order) + 1)
    for k in range(len(order) - 1, -1, -1):
        beyond[k] = beyond[k + 1] or ahead[order[k]][0]
    for k, seq in enumerate(order):
        _, item, was_held = ahead[seq]
        if seq != last + 1:
            if not beyond[k]:
                out.hold += [ahead[s][1] for s in order[k:] if not ahead[s][2]]
                break
            skipped = (*skipped, (last + 1, seq - 1))
        out.evaluate.append(item)
        if was_held:
            out.release.append(seq)
        last = seq
    if len(skipped) > SKIPPED_KEPT:
        # The oldest gaps are forgotten: a message from one is stored without rules.
        forgotten = skipped[-SKIPPED_KEPT - 1][1]
        base = forgotten if base is None else max(base, forgotten)
        skipped = skipped[-SKIPPED_KEPT:]
    out.cursor = Cursor(last, base, skipped)
    return out
