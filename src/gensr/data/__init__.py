"""Data: photo sources, degradations (HR -> LR) and the prepare stage that writes LR/HR pairs."""
