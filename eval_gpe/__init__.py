"""eval_gpe package."""
