"""Data: photo sources, degradations (HR -> LR), the prepare stage that writes LR/HR pairs, the one
reader of those pairs (`pairs`) and the bicubic baseline (`resize.bicubic_upscale`)."""
