"""Alert rules over event time. Pure: no IO, the current time is an argument."""
