"""Handler modules of the style_handlers.py example."""
