"""Segments: stored expressions and the memberships of profiles in them."""
