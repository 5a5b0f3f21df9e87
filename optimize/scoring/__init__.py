"""What a setting scores: lm-eval on the loaded model (`fitness`, with the
prefix store and batched passes), concept strength (`concept`), the named
metrics a score is made of, and placing a setting's vectors on the model."""
