"""Plain helpers and sample data that several test modules use: builders of
tiny models and task folders, form values, checks on a handler's answer.

Fixtures live in conftest.py files (tests/, and one per tier folder); what is
here takes no fixtures, so a test module imports it like any library, and no
test module imports another.
"""
