"""Identity: namespaces, the identity graph (identities seen together are one person), profile
merges under a merge policy with attribute provenance, and the profile lookups built on them."""
