"""Data governance (docs/governance.md): data-usage labels (``labels.py``: the standard families
and custom labels), marketing actions (``actions.py``: the core set, custom ones per sandbox),
policies — a marketing action denied for a condition over labels, in a language of its own
(``policy_language.py``, policy.lark) — and their evaluation with lineage
(``lineage.py``: the fields in play, the datasets that supply them, their labels;
``service.py``: ``evaluate``, which activation calls). ``models.py`` (the API shapes) and
cdp/api/routes/governance.py are the HTTP side (``/v1/labels``, ``/v1/marketing-actions``,
``/v1/policies``).

Labels are put on datasets and on their fields by cdp/datasets.
"""
