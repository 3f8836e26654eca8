"""The service layer: what the API does to transits and alerts, over the repositories
(:mod:`transit.db`) and the pure lifecycle (:mod:`transit.lifecycle`).

A service takes the caller's connection and works in its transaction; the caller (an
HTTP request) commits, or rolls back when the service raises one of
:mod:`transit.services.errors`. Services know nothing of HTTP.
"""
