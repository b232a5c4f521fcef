"""The card: metadata, context, Jinja rendering, the comparison and speed sections, markers, lint, plots."""
