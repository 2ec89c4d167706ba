"""An enterprise's own pages, API and CLI: its API keys, grants, usage and applications."""
