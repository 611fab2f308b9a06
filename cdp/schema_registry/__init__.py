"""The schema in force per sandbox: readable and replaceable through the API (``/v1/schema``).

A sandbox that never stored one uses the Luma schema (cdp/schema/luma.py). Replacing it is
refused (409 ``schema_incompatible``) when it would make stored data wrong; see service.py for
the compatibility rule.
"""
