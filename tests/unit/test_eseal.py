"""The e-seal frame codec: round trips, streaming, resynchronisation, signatures, fuzz."""

from datetime import UTC, datetime

from hypothesis import given
from hypothesis import strategies as st

from transit.bench.fuzz_eseal import fuzz
from transit.devices.eseal import BadFrame, SealFrame, SealFrameDecoder, encode
from transit.model import SealStatus

KEY = b"0123456789abcdef"
FRAME = SealFrame(
    "ESL1", 123, SealStatus.SEALED, 5, 87, datetime(2026, 11, 23, 8, 0, tzinfo=UTC), 3.139, 101.6869
)

frames = st.builds(
    SealFrame,
    manufacturer=st.text(alphabet="ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", min_size=4, max_size=4),
    serial=st.integers(0, 2**32 - 1),
    status=st.sampled_from(list(SealStatus)),
    counter=st.integers(0, 2**32 - 1),
    battery_pct=st.none() | st.integers(0, 100),
    clock=st.integers(0, 2**32 - 1).map(lambda s: datetime.fromtimestamp(s, UTC)),
    lat=st.none() | st.integers(-900_000_000, 900_000_000).map(lambda v: v / 1e7),
    lon=st.none() | st.integers(-1_800_000_000, 1_800_000_000).map(lambda v: v / 1e7),
)


def _expected(f: SealFrame, signed: bool) -> SealFrame:
    has_pos = f.lat is not None and f.lon is not None
    return SealFrame(
        f.manufacturer,
        f.serial,
        f.status,
        f.counter,
        f.battery_pct,
        f.clock,
        f.lat if has_pos else None,
        f.lon if has_pos else None,
        signed,
    )


@given(frames, st.booleans())
def test_every_frame_round_trips(frame: SealFrame, signed: bool) -> None:
    dec = SealFrameDecoder({frame.seal_id: KEY} if signed else None)
    dec.receive_data(encode(frame, KEY if signed else None))
    assert dec.events() == [_expected(frame, signed)]


@given(st.lists(frames, min_size=1, max_size=4), st.lists(st.integers(1, 30), min_size=1))
def test_frames_split_across_reads_and_packed_in_one_come_out_whole(fs, cuts) -> None:
    data = b"".join(encode(f) for f in fs)
    dec = SealFrameDecoder()
    i = k = 0
    while i < len(data):
        n = cuts[k % len(cuts)]
        dec.receive_data(data[i : i + n])
        i, k = i + n, k + 1
    assert dec.events() == [_expected(f, False) for f in fs]


def test_decoder_resynchronises_after_garbage_and_reports_a_corrupt_frame() -> None:
    good = encode(FRAME)
    corrupt = bytearray(good)
    corrupt[10] ^= 0xFF
    dec = SealFrameDecoder()
    dec.receive_data(b"\x00\xe5garbage\xe5" + bytes(corrupt) + b"noise" + good)
    events = dec.events()
    assert [type(e) for e in events] == [BadFrame, SealFrame]
    assert events[0].reason == "crc mismatch"
    assert events[1].seal_id == "ESL1-0000000123"
    assert dec.garbage_bytes > 0


def test_wrong_key_missing_signature_and_unknown_version_are_refused_with_reasons() -> None:
    signed = encode(FRAME, KEY)
    dec = SealFrameDecoder({FRAME.seal_id: b"another key 0000"})
    dec.receive_data(signed + encode(FRAME))
    reasons = [e.reason for e in dec.events() if isinstance(e, BadFrame)]
    assert reasons == [
        "bad HMAC from seal ESL1-0000000123",
        "unsigned frame from seal ESL1-0000000123, which holds a key",
    ]
    v2 = bytearray(encode(FRAME))
    v2[2] = 2
    dec = SealFrameDecoder()
    dec.receive_data(bytes(v2))
    assert [e.reason for e in dec.events()] == ["unsupported version 2"]


def test_fuzzed_inputs_never_raise() -> None:
    result = fuzz(20_000, seed=7)
    assert result.exceptions == 0, result.first_exception
    assert result.frames > 1000 and result.bad_frames > 1000
