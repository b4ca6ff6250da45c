"""Everything about talking to upstream services."""
