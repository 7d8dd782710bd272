"""Evaluation: SR metrics for every trained variant and the bicubic baseline, comparison
pictures, the offline HTML report, DVC metrics/plots and MLflow logging (see `stage`).

Generators run through the production tiler (`gensr.infer.tiling`, see `inference`); user errors
are `gensr.errors.MissingInputError` / `BadInputError`."""
