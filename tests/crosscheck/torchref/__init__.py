"""Reference computations in plain PyTorch (torch and numpy only, no transformers) for the cross-checks the
ordinary test suite runs: one training step of every algorithm, and BERTScore on the encoder presets."""
