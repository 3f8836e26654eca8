"""NMEA decoding, on hand-made sentences and on gpsd's 69 real captures."""

from functools import reduce
from pathlib import Path

import pytest

from transit.bench.nmea import DEFAULT_DIR, run
from transit.devices.nmea import NmeaDecoder


def sentence(body: str) -> str:
    return f"${body}*{reduce(lambda a, c: a ^ ord(c), body, 0):02X}"


RMC = sentence("GNRMC,030719.000,A,3747.0873,S,17518.8938,E,10.0,181.39,311214,,,A")
GGA = sentence("BDGGA,030720.500,3747.0875,S,17518.8938,E,1,08,1.1,59.8,M,23.7,M,,0000")


def test_rmc_yields_a_fix_in_degrees_and_kmh() -> None:
    fix = NmeaDecoder().feed(RMC)
    assert fix is not None
    assert fix.time.isoformat() == "2014-12-31T03:07:19+00:00"
    assert fix.lat == pytest.approx(-(37 + 47.0873 / 60))
    assert fix.lon == pytest.approx(175 + 18.8938 / 60)
    assert fix.speed_kmh == pytest.approx(18.52)
    assert (fix.course_deg, fix.source, fix.talker) == (181.39, "RMC", "GN")


def test_gga_takes_its_date_from_the_latest_rmc_and_waits_for_one() -> None:
    dec = NmeaDecoder()
    assert dec.feed(GGA) is None
    dec.feed(RMC)
    fix = dec.feed(GGA)
    assert fix is not None
    assert fix.time.isoformat() == "2014-12-31T03:07:20.500000+00:00"
    assert fix.speed_kmh is None


def test_zda_sets_the_date() -> None:
    dec = NmeaDecoder()
    dec.feed(sentence("GPZDA,120000.00,05,03,2026,00,00"))
    fix = dec.feed(GGA)
    assert fix is not None
    assert fix.time.date().isoformat() == "2026-03-05"


def test_proprietary_unknown_and_void_sentences_yield_nothing() -> None:
    dec = NmeaDecoder()
    for line in (
        sentence("PGRME,15.0,M,45.0,M,25.0,M"),
        sentence("GPGSV,1,1,00"),
        sentence("GPRMC,030719.000,V,,,,,,,311214,,,N"),
    ):
        assert dec.feed(line) is None


def test_wrong_or_missing_checksum_never_yields_a_fix_on_any_real_sentence() -> None:
    """Every position sentence of every capture, with its checksum altered or removed."""
    tried = 0
    for log in sorted(Path(DEFAULT_DIR).glob("*.log")):
        for line in log.read_text(errors="replace").splitlines():
            if line[3:6] not in ("RMC", "GGA", "GNS", "GLL") or "*" not in line:
                continue
            body, _, given = line.strip().rpartition("*")
            dec = NmeaDecoder()
            dec.feed(RMC)  # a date is known, so only the checksum can refuse it
            if dec.feed(line) is None:
                continue
            tried += 1
            wrong = f"{(int(given[:2], 16) ^ 0x5A):02X}" if len(given) >= 2 else "00"
            assert dec.feed(f"{body}*{wrong}") is None, line
            assert dec.feed(body) is None, line
    assert tried > 3000


def test_decoder_reproduces_at_least_98_percent_of_gpsd_fixes(capsys) -> None:
    result = run()
    assert len(result.per_file) == 69
    with capsys.disabled():
        print(
            f"\nNMEA vs gpsd: {result.matched}/{result.total} fixes matched, "
            f"ratio {result.ratio:.4f}"
        )
    assert result.ratio >= 0.98
