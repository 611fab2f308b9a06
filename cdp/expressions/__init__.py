"""Segment expressions over HTTP: checking against the schema in force of a sandbox.

The language itself lives in cdp/dsl; this package only connects it to sandboxes. ``in segment``
references resolve against the ``segments`` catalogue given in the request, or, when none is
given, against the segments stored in the sandbox.
"""
