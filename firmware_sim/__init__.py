"""Simulated GPS trackers and e-seals that speak transit's device protocols."""
