"""The churn model: a gradient-boosted classifier on imputed, scaled and one-hot encoded columns."""
