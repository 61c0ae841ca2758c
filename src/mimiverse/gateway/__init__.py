"""The model gateway: one door to every model."""
