from transit.model import is_valid_mrn, make_mrn, mrn_check_digit


def test_check_digit_matches_iso_6346_worked_example() -> None:
    # ISO 6346's own example: container CSQU 305438, check digit 3.
    assert mrn_check_digit("CSQU305438") == 3


def test_made_mrn_is_valid_and_a_changed_character_is_not() -> None:
    mrn = make_mrn(26, "MY", "ABC123456789")
    assert len(mrn) == 18
    assert is_valid_mrn(mrn)
    wrong = mrn[:17] + str((int(mrn[17]) + 1) % 10)
    assert not is_valid_mrn(wrong)
    assert not is_valid_mrn(mrn.lower())
