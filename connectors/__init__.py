"""Connectors as code: configs in this folder, deployed through the Connect REST API."""
