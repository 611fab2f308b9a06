"""Profiles over HTTP. For now: evaluating an expression on a profile document (on-site
personalisation asks "is this profile in this segment right now?"). Lookup by identity and the
stored profiles come with ingestion."""
