"""The documented size and range limits of every request field, in one place.

Every service checks each request against these before it reads or writes
anything (see :mod:`cfgclone.common.message_checks`); README.md, "Limits",
lists them for users. A value beyond a limit is INVALID_ARGUMENT naming the
field. The limits are generous for real use and small enough that no single
request can make a service hold or store an unbounded amount.
"""

from __future__ import annotations

from datetime import UTC, datetime

MAX_TEXT_CHARS = 1024
"""Any string field not listed below: names, hostnames, units, selectors, request ids."""

MAX_LABEL_KEY_CHARS = 63
"""A key of ``System.labels``."""

MAX_LABEL_VALUE_CHARS = 1024
"""A value of ``System.labels``."""

MAX_FREE_TEXT_CHARS = 16 * 1024
"""Free text a person writes (a change's ``reason``); tabs and line breaks allowed."""

MAX_CONTENT_STRING_CHARS = 256 * 1024
"""A string inside configuration content (it may hold a whole configuration file)."""

MAX_CONTENT_BYTES = 1024 * 1024
"""A configuration's content as serialised protobuf."""

MAX_REPEATED = 1000
"""Items of any list or map field not listed below (targets, disks, thresholds, labels)."""

MAX_LABELS = 64
"""Entries of ``System.labels``."""

MAX_SERIES_PER_BATCH = 10_000
"""``SampleBatch.series``; the points of a series are bounded by the message size."""

MAX_CONTENT_ENTRIES = 10_000
"""Keys of one object, or items of one list, inside configuration content."""

MAX_PAGE_TOKEN_CHARS = 512
"""A page token; the services issue far shorter ones."""

FREE_TEXT_FIELDS = frozenset({"reason"})
"""Names of string fields that hold free text (longer, with tabs and line breaks)."""

MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
"""Timestamps lie in protobuf's valid range, 0001-01-01 to 9999-12-31 UTC."""
EARLIEST_SAMPLE_TIME = datetime(1678, 1, 1, tzinfo=UTC)
LATEST_SAMPLE_TIME = datetime(2262, 4, 11, tzinfo=UTC)
"""Windows over samples (fingerprints) lie where int64 nanoseconds since 1970 reach."""

MAX_DURATION_SECONDS = 315_576_000_000
"""A Duration is within +-10,000 years (protobuf's range); fields narrow it further."""

MAX_POLICY_WINDOW_SECONDS = 7 * 24 * 3600
"""A policy's ``verification_delay`` and ``verification_window``."""

MAX_RESOURCE_ID = 2**63 - 1
"""Numeric ids of changes and fingerprints fit PostgreSQL's bigint."""

MAX_SMALL_ID = 2**31 - 1
"""Configuration versions and scrape target ids fit PostgreSQL's integer."""
