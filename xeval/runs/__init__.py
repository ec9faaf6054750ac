"""The run registry: every run recorded in an embedded SQLite database."""
