"""Inline completions: context, stop rules, in-flight reuse and cancellation, feedback."""
