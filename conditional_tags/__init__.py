"""conditional_tags package."""
