"""The schema in force: typed profile attributes and event fields (SPEC.md, "The Luma schema").

The checker and the ingestion validator read the same :class:`Schema`.
"""

from cdp.schema.model import Schema, SchemaError
from cdp.schema.luma import luma_schema

__all__ = ["Schema", "SchemaError", "luma_schema"]
