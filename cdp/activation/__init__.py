"""Destinations and activation: audiences sent to webhooks and files, with policies and consent
enforced (docs/activation.md)."""
