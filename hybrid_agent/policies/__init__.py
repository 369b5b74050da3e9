"""Pure decisions: tool schemas (policy rules and risk classes later)."""
