"""Browser-facing pages: the landing page, offline API docs and the SQLAdmin back office."""
