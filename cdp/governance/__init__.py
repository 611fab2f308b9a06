"""Data governance: data-usage labels (here), marketing actions and policies (later issues).

Labels are put on datasets and on their fields (cdp/datasets); policies deny a marketing action
for a combination of labels, and activation enforces them with lineage.
"""
