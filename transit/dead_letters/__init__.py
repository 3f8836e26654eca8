"""Dead letters: messages refused at the ingest boundary, kept with their raw bytes.

``replay`` feeds a kept message through ingest's own path once its cause is fixed (a
device registered late, a key rotated); ``cli`` is ``transit dead-letters
list|show|replay``. Their SQL (finding and showing them: who sent what, and why it
was refused) is :mod:`transit.db.dead_letters`. Nothing is imported here, so the
command line starts without loading ingest.
"""
