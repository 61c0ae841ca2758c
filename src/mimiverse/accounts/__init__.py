"""Users, sessions, API tokens, teams, quotas and the audit log."""
