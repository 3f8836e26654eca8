"""Device codecs: NMEA 0183, e-seal frames and the MQTT payload v1. Sans-IO."""
