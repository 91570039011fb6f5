"""The pass-key retrieval format shared by training (tools/model) and evaluation.

The runtime's quality harness (predictor/eval) builds the same strings; keep them in step
(docs/QUALITY.md describes the format).
"""
NEEDLE = "\nThe pass key is {key}. Remember it. {key} is the pass key.\n"
QUESTION = "\nWhat is the pass key? The pass key is"
ANSWER = " {key}."


def make_key(rng):
    return str(rng.randint(10000, 99999))
