"""Data: label schema, report corpus and labeler, prompts, radiograph phantoms, pools and adapters."""
