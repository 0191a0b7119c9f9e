"""Text: unlearning people's facts from a small transformer language model.

`facts` generates the corpus (fictitious people and their personal data), `data` turns it into
token tensors and splits by person, `evaluate` measures what a model still knows, and `run`
is the experiment (`unlearnkit run --preset facts-default`). The language-model methods live
in `unlearnkit.text.methods`, registered for the "text" modality.
"""
