"""Model cards, shipped inside the package as ``oldphoto.model_cards`` (see pyproject.toml)."""
