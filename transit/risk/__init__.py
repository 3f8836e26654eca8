"""The risk score of a transit: features from what the system already sees (its fixes,
seal events and alerts, the corridor's past transits, earlier incidents) and an
explainable scorer (every score with its reasons). Pure: no IO."""
