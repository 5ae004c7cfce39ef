"""Views of results as files: atomic staging, the contract's JSON/CSV, map files."""
