"""Recommender systems as a modality: a synthetic implicit-feedback log with planted tastes,
matrix-factorization and two-tower recommenders trained by BPR through `unlearnkit.train.fit`,
user-level deletion methods (registered for the "recsys" modality), and ranking and membership
evidence against a model retrained without the deleted users. `unlearnkit run --preset
recsys-smoke` runs it end to end."""
