"""The core marketing actions every sandbox has (../shared/API.md keys), after Adobe's core set.
Custom actions are stored per sandbox (cdp/governance/service.py)."""

from __future__ import annotations

CORE_ACTIONS: dict[str, tuple[str, str]] = {
    "analytics": ("Analytics", "Measure, analyse and report on how customers use the organisation's sites and "
                               "apps."),
    "combine_with_pii": ("Combine with PII", "Combine the data with personally identifiable information."),
    "cross_site_targeting": ("Cross-site targeting", "Target content or ads across sites (ad platforms)."),
    "data_science": ("Data science", "Use the data in data science workflows: models, recommendations."),
    "email_targeting": ("Email targeting", "Use the data in email campaigns."),
    "export_to_third_party": ("Export to third party", "Send the data to a third party."),
    "onsite_advertising": ("Onsite advertising", "Select and show ads on the organisation's own sites and apps."),
    "onsite_personalization": ("Onsite personalization", "Personalise content on the organisation's own sites and "
                                                         "apps."),
    "segment_match": ("Segment match", "Share audiences with segment-match partners."),
    "single_identity_personalization": ("Single identity personalization", "Personalise using one identity's "
                                                                           "data, not stitched across identities."),
}
