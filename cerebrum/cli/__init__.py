"""The ``cerebrum`` command line: one module per command, plus the HTTP client and rendering."""
