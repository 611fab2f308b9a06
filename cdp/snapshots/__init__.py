"""Parquet snapshots of a sandbox's profiles and events, for the analytic engines (docs/backends.md)."""

from cdp.snapshots.export import Manifest, export_snapshot, latest_manifest, snapshot_kind

__all__ = ["Manifest", "export_snapshot", "latest_manifest", "snapshot_kind"]
