"""Training: datamodule, LightningModules, EMA and callbacks, MLflow logging, the train entry point.

`gensr.training.run.train(cfg)` trains `cfg.variant`; `pipelines/train.py` is its command line.
"""
