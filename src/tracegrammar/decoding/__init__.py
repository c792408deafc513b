"""Model-side code: loading models, the constrained decoding engine, the generation driver.
Everything under here may import torch; nothing outside it does."""
