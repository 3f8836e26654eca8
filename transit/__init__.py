"""transit: electronic cargo tracking for customs transit."""

from transit.model import AlertEvent, AlertType, Fix, SealEvent, SealStatus, Severity

__all__ = ["AlertEvent", "AlertType", "Fix", "SealEvent", "SealStatus", "Severity"]
__version__ = "0.1.0"
