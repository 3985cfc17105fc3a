"""The published networks as plain ``nn.Module``s, each built from a small config.

Module names and container indices follow the published state-dict keys, so a converted
checkpoint loads with ``load_state_dict(strict=True)`` and nothing is renamed by hand.
"""
